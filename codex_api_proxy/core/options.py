"""Every option of the proxy, in one table: its name, variable, config key, default, help and check.

Both sides are made from this table: the click options of `start`/`restart` (cli/config.py: flag >
variable > config file > default) and the `codex_*` mitmproxy options (proxy/options.py: `--set
codex_heartbeat=5` under mitmdump/mitmweb, the variable as the default). A value from anywhere goes
through the same check, so `--heartbeat 0`, `heartbeat = 0` in the config and `--set codex_heartbeat=0`
fail alike. Plain Python: no click, no mitmproxy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV = "CODEX_API_PROXY_"
API_KEY_ENV = ENV + "API_KEY"
# The variables read outside the option table (EXTRA_VARIABLES says what each does), named once here and
# imported by the module that reads each.
STATE_DIR_ENV = ENV + "STATE_DIR"
DEMO_PORT_ENV = ENV + "DEMO_PORT"
DEBUG_ENV = ENV + "DEBUG"
CLAUDE_BIN_ENV = ENV + "CLAUDE_BIN"
CODEX_BIN_ENV = ENV + "CODEX_BIN"
STORE_MAX_ITEMS_ENV = ENV + "STORE_MAX_ITEMS"
STORE_MAX_BYTES_ENV = ENV + "STORE_MAX_BYTES"
STORE_TTL_ENV = ENV + "STORE_TTL"
KEY_FROM_ARGV_ENV = ENV + "KEY_FROM_ARGV"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_UPSTREAM_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"


def default_state_dir() -> Path:
    value = os.environ.get(STATE_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".codex-api-proxy"


def parse_model_map(spec: str) -> dict[str, str]:
    """`opus=gpt-5.5,haiku=gpt-5.4-mini` -> dict; raises ValueError on a malformed entry."""
    result: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        family, sep, model = entry.partition("=")
        if not sep or not family.strip() or not model.strip():
            raise ValueError(f"model map entry {entry!r} is not family=model")
        result[family.strip().lower()] = model.strip()
    return result


# The checks: each takes the text a person wrote (flag, variable, config, --set) and returns the value
# or raises ValueError with the reason.


@dataclass(frozen=True)
class Text:
    name: str = "text"

    def __call__(self, value: Any) -> str:
        return str(value).strip()


@dataclass(frozen=True)
class File:
    """A file's path; an existing directory is refused."""

    name: str = "file"

    def __call__(self, value: Any) -> str:
        text = str(value).strip()
        if text and Path(text).expanduser().is_dir():
            raise ValueError(f"{text!r} is a directory")
        return text


@dataclass(frozen=True)
class Url:
    """An absolute URL with one of the given schemes and a host, checked before anything starts.
    `echo`: whether a message may repeat the value (not for a proxy URL: it may hold a password)."""

    schemes: tuple[str, ...]
    echo: bool = True
    name: str = "url"

    def __call__(self, value: Any) -> str:
        text = str(value).strip()
        shown = repr(text) if self.echo else "the value"
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"{shown} is not a URL") from None
        if parts.scheme not in self.schemes or not parts.hostname:
            raise ValueError(f"{shown} is not a URL like {self.schemes[0]}://host:port")
        return text


@dataclass(frozen=True)
class Seconds:
    """A finite number of seconds, above zero (or zero too, when `zero_ok`)."""

    zero_ok: bool = False
    name: str = "seconds"

    def __call__(self, value: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number of seconds") from None
        if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not self.zero_ok):
            raise ValueError(f"{value!r} is not a {'' if self.zero_ok else 'positive '}number of seconds")
        return seconds


@dataclass(frozen=True)
class Port:
    name: str = "port"

    def __call__(self, value: Any) -> int:
        try:
            port = int(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a port number") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{port} is not a port between 1 and 65535")
        return port


@dataclass(frozen=True)
class Choice:
    choices: tuple[str, ...]
    name: str = "choice"

    def __call__(self, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return text


@dataclass(frozen=True)
class ModelMap:
    """`opus=gpt-5.5,haiku=gpt-5.4-mini`, checked with the parser the proxy itself uses."""

    name: str = "family=model,..."

    def __call__(self, value: Any) -> str:
        parse_model_map(str(value))
        return str(value).strip()


@dataclass(frozen=True)
class Flag:
    name: str = "boolean"

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{value!r} is not true or false")


Check = Text | File | Url | Seconds | Port | Choice | ModelMap | Flag


@dataclass(frozen=True)
class Option:
    """One option: `--name` on the command line, `name` in the config file, `env` in the environment,
    `addon` the mitmproxy option it feeds (None: the CLI's own, e.g. the log file)."""

    name: str
    check: Check
    default: Any  # the value, or a function giving it (paths under the state folder)
    help: str
    env: str | None = None
    addon: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def flags(self) -> list[str]:
        dashed = self.name.replace("_", "-")
        flag = f"--{dashed}/--no-{dashed}" if isinstance(self.check, Flag) else f"--{dashed}"
        return [flag, *self.aliases]

    @property
    def is_flag(self) -> bool:
        return isinstance(self.check, Flag)

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def as_text(self, value: Any) -> str:
        """A value as a mitmproxy str option holds it (`--set` cannot parse a float option)."""
        return "" if value is None else str(value)


def _state(name: str) -> Callable[[], str]:
    return lambda: str(default_state_dir() / name)


HTTP_URL = Url(("https", "http"))

OPTIONS: tuple[Option, ...] = (
    Option("host", Text(), DEFAULT_HOST, "Address to bind (anything but loopback needs an API key).", ENV + "HOST"),
    Option("port", Port(), DEFAULT_PORT, "Port to listen on.", ENV + "PORT"),
    Option("api_key_file", File(), None, f"File holding the local API key clients must send (or set "
           f"{API_KEY_ENV}); never pass a key in argv.", ENV + "API_KEY_FILE", addon="codex_api_key_file"),
    Option("auth_file", File(), None, "The Codex login (default $CODEX_HOME/auth.json, "
           "else ~/.codex/auth.json).", ENV + "AUTH_FILE", addon="codex_auth_file"),
    Option("upstream_url", HTTP_URL, DEFAULT_UPSTREAM_URL,
           "ChatGPT Codex backend base URL (generation: POST {base}/responses).", ENV + "UPSTREAM_URL",
           addon="codex_upstream_url"),
    Option("openai_url", HTTP_URL, DEFAULT_OPENAI_URL,
           "OpenAI API base URL (auth.json with an OPENAI_API_KEY).", ENV + "OPENAI_URL", addon="codex_openai_url"),
    Option("proxy", Url(("http", "https", "socks5", "socks5h"), echo=False), None,
           "Outbound proxy (http, https, socks5, socks5h) for upstream calls and token refreshes; without it "
           "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY apply.",
           ENV + "HTTPS_PROXY", addon="codex_outbound_proxy"),
    Option("heartbeat", Seconds(), 10.0, "Seconds of upstream silence between keep-alives to clients.",
           ENV + "HEARTBEAT", addon="codex_heartbeat"),
    Option("idle_timeout", Seconds(), 300.0, "Seconds of upstream silence inside a stream before it fails.",
           ENV + "IDLE_TIMEOUT", addon="codex_idle_timeout"),
    Option("first_byte_timeout", Seconds(), 300.0, "Seconds to wait for the upstream's response headers.",
           ENV + "FIRST_BYTE_TIMEOUT", addon="codex_first_byte_timeout"),
    Option("connect_timeout", Seconds(), 15.0, "Seconds to connect to the upstream.", ENV + "CONNECT_TIMEOUT",
           addon="codex_connect_timeout"),
    Option("models_cache_ttl", Seconds(zero_ok=True), 300.0, "Seconds a model listing is cached (0: never).",
           ENV + "MODELS_CACHE_TTL", addon="codex_models_cache_ttl"),
    Option("model_map", ModelMap(), "", "Claude family -> GPT model, e.g. opus=gpt-5.5,haiku=gpt-5.4-mini "
           "(unset: built-in map).", ENV + "MODEL_MAP", addon="codex_model_map"),
    Option("expose_reasoning", Flag(), False, "Give Chat Completions clients reasoning summaries.",
           ENV + "EXPOSE_REASONING", addon="codex_expose_reasoning"),
    Option("allow_origin", Text(), "", "Browser origins allowed to call the proxy, comma-separated "
           "(e.g. http://localhost:3000); every other page gets 403.", ENV + "ALLOW_ORIGIN", addon="codex_allow_origin"),
    Option("allow_host", Text(), "", "Host names clients may use beyond loopback and the bind address, "
           "comma-separated (a DNS-rebinding guard).", ENV + "ALLOW_HOST", addon="codex_allow_host"),
    Option("log_level", Choice(("debug", "info", "warning", "error")), "info", "Daemon log level.",
           ENV + "LOG_LEVEL"),
    Option("log_format", Choice(("text", "json")), "text", "Daemon log lines as text or JSON.",
           ENV + "LOG_FORMAT"),
    Option("log_file", File(), _state("codex-api-proxy.log"), "The daemon's log (default: beside the config).",
           ENV + "LOG_FILE"),
    Option("pid_file", File(), _state("codex-api-proxy.pid"), "The daemon's pid file (default: beside the "
           "config).", ENV + "PID_FILE"),
    Option("allow_no_login", Flag(), False, "Start even when no Codex login is found.", ENV + "ALLOW_NO_LOGIN"),
    Option("web", Flag(), False, "Run under mitmweb, to look at every translated request in a browser.",
           ENV + "WEB"),
    Option("web_port", Port(), 8081, "mitmweb's UI port (on 127.0.0.1) with --web.", ENV + "WEB_PORT"),
)  # fmt: skip
BY_NAME = {o.name: o for o in OPTIONS}
ADDON_OPTIONS = tuple(o for o in OPTIONS if o.addon)

# Two options of the command line only: never saved in the config file, never a mitmproxy option.
CONFIG_OPTION = Option("config", File(), _state("config.toml"),
                       "The TOML config start saves and restart/status/doctor read.", ENV + "CONFIG",
                       aliases=("--state-file",))  # fmt: skip
API_KEY_OPTION = Option("api_key", Text(), None, f"Local key clients must send; prefer ${API_KEY_ENV} or "
                        "--api-key-file (never saved, never passed on to the daemon's command line).",
                        API_KEY_ENV)  # fmt: skip


@dataclass(frozen=True)
class Variable:
    """A CODEX_API_PROXY_* variable that is not an option's: read by one module, never saved."""

    name: str
    help: str


EXTRA_VARIABLES = (
    Variable(STATE_DIR_ENV, "The folder of the config, pid file and log (default ~/.codex-api-proxy)."),
    Variable(DEMO_PORT_ENV, "The port of `demo`."),
    Variable(DEBUG_ENV, "Any value: an internal error shows its traceback instead of one line."),
    Variable(CLAUDE_BIN_ENV, "The Claude Code executable `claude` runs (default: `claude` on PATH)."),
    Variable(CODEX_BIN_ENV, "The Codex CLI executable `codex` runs (default: `codex` on PATH)."),
    Variable(STORE_MAX_ITEMS_ENV, "How many stored Responses items the conversation store keeps."),
    Variable(STORE_MAX_BYTES_ENV, "How many bytes of stored Responses items the conversation store keeps."),
    Variable(STORE_TTL_ENV, "Seconds a stored Responses item is kept after its last use."),
    Variable(KEY_FROM_ARGV_ENV, "Internal: the re-executed process's local key was given as --api-key."),
)
# Every CODEX_API_PROXY_* variable the package reads: any other one set is a misspelling (`main` warns).
KNOWN_VARIABLES = frozenset(
    {o.env for o in (*OPTIONS, CONFIG_OPTION, API_KEY_OPTION) if o.env} | {v.name for v in EXTRA_VARIABLES}
)


def default_of(name: str) -> Any:
    return BY_NAME[name].default_value()
