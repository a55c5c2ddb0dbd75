"""The daemon's options in one table, and the TOML config file `start` saves and the others read.

Every option resolves in one order: command line > environment variable > config file > default, so
`restart`, `status` and `doctor` find the daemon exactly where the last `start` put it. The config never
holds the local API key itself: only the file it came from or the variable that held it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import tomli_w

from ..core.settings import (
    API_KEY_ENV,
    DEFAULT_HOST,
    DEFAULT_OPENAI_URL,
    DEFAULT_PORT,
    DEFAULT_UPSTREAM_URL,
    OPENAI_URL_ENV,
    UPSTREAM_URL_ENV,
    parse_model_map,
)

ENV = "CODEX_API_PROXY_"
STATE_DIR_ENV = ENV + "STATE_DIR"


def default_state_dir() -> Path:
    value = os.environ.get(STATE_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".codex-api-proxy"


class Url(click.ParamType):
    """An absolute URL with one of the given schemes and a host, checked before anything starts."""

    name = "url"

    def __init__(self, schemes: tuple[str, ...]) -> None:
        self.schemes = schemes

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value).strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.fail(f"{text!r} is not a URL", param, ctx)
        if parts.scheme not in self.schemes or not parts.hostname:
            self.fail(f"{text!r} is not a URL like {self.schemes[0]}://host:port", param, ctx)
        return text


class ModelMap(click.ParamType):
    """`opus=gpt-5.5,haiku=gpt-5.4-mini`, checked with the parser the proxy itself uses."""

    name = "family=model,..."

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            parse_model_map(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


POSITIVE = click.FloatRange(min=0, min_open=True)


@dataclass(frozen=True)
class Option:
    """One daemon option: its CLI flag, variable, default, and the mitmproxy option it feeds."""

    name: str
    type: Any
    default: Any
    help: str
    env: str | None = None
    addon: str | None = None  # the codex_* mitmproxy option
    aliases: tuple[str, ...] = ()

    @property
    def flags(self) -> list[str]:
        dashed = self.name.replace("_", "-")
        flag = f"--{dashed}/--no-{dashed}" if self.type is bool else f"--{dashed}"
        return [flag, *self.aliases]

    def click_option(self) -> Any:
        default = self.default() if callable(self.default) else self.default
        return click.option(
            *self.flags,
            self.name,
            type=None if self.type is bool else self.type,
            default=None,  # None = not given: the config file and the default come after
            envvar=self.env,
            show_envvar=bool(self.env),
            show_default=str(default) if default not in (None, "") else False,
            help=self.help,
        )


def _state(name: str) -> Any:
    return lambda: str(default_state_dir() / name)


OPTIONS: tuple[Option, ...] = (
    Option("host", str, DEFAULT_HOST, "Address to bind (anything but loopback needs an API key).", ENV + "HOST"),
    Option("port", click.IntRange(1, 65535), DEFAULT_PORT, "Port to listen on.", ENV + "PORT"),
    Option("api_key_file", click.Path(dir_okay=False), None,
           f"File holding the local API key clients must send (or set {API_KEY_ENV}).", ENV + "API_KEY_FILE"),
    Option("auth_file", click.Path(dir_okay=False), None, "The Codex login (default $CODEX_HOME/auth.json, "
           "else ~/.codex/auth.json).", ENV + "AUTH_FILE", addon="codex_auth_file"),
    Option("upstream_url", Url(("https", "http")), DEFAULT_UPSTREAM_URL, "ChatGPT Codex backend base URL.",
           UPSTREAM_URL_ENV, addon="codex_upstream_url"),
    Option("openai_url", Url(("https", "http")), DEFAULT_OPENAI_URL,
           "OpenAI API base URL (auth.json with an OPENAI_API_KEY).", OPENAI_URL_ENV, addon="codex_openai_url"),
    Option("proxy", Url(("http", "https", "socks5", "socks5h")), None,
           "Outbound proxy (http, https, socks5, socks5h) for upstream calls and token refreshes; without it "
           "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY apply.",
           ENV + "HTTPS_PROXY", addon="codex_outbound_proxy"),
    Option("heartbeat", POSITIVE, 10.0, "Seconds of upstream silence between keep-alives to clients.",
           ENV + "HEARTBEAT", addon="codex_heartbeat"),
    Option("idle_timeout", POSITIVE, 300.0, "Seconds of upstream silence inside a stream before it fails.",
           ENV + "IDLE_TIMEOUT", addon="codex_idle_timeout"),
    Option("first_byte_timeout", POSITIVE, 300.0, "Seconds to wait for the upstream's response headers.",
           ENV + "FIRST_BYTE_TIMEOUT", addon="codex_first_byte_timeout"),
    Option("connect_timeout", POSITIVE, 15.0, "Seconds to connect to the upstream.", ENV + "CONNECT_TIMEOUT",
           addon="codex_connect_timeout"),
    Option("models_cache_ttl", click.FloatRange(min=0), 300.0, "Seconds a model listing is cached.",
           ENV + "MODELS_CACHE_TTL", addon="codex_models_cache_ttl"),
    Option("model_map", ModelMap(), "", "Claude family -> GPT model, e.g. opus=gpt-5.5,haiku=gpt-5.4-mini (unset: built-in map).",
           ENV + "MODEL_MAP", addon="codex_model_map"),
    Option("expose_reasoning", bool, False, "Give Chat Completions clients reasoning summaries.",
           ENV + "EXPOSE_REASONING", addon="codex_expose_reasoning"),
    Option("allow_origin", str, "", "Browser origins allowed to call the proxy, comma-separated "
           "(e.g. http://localhost:3000); every other page gets 403.", ENV + "ALLOW_ORIGIN", addon="codex_allow_origin"),
    Option("allow_host", str, "", "Host names clients may use beyond loopback and the bind address, "
           "comma-separated (a DNS-rebinding guard).", ENV + "ALLOW_HOST", addon="codex_allow_host"),
    Option("log_level", click.Choice(["debug", "info", "warning", "error"]), "info", "Daemon log level.",
           ENV + "LOG_LEVEL"),
    Option("log_format", click.Choice(["text", "json"]), "text", "Daemon log lines as text or JSON.",
           ENV + "LOG_FORMAT"),
    Option("log_file", click.Path(dir_okay=False), _state("codex-api-proxy.log"), "The daemon's log (default: beside the config).",
           ENV + "LOG_FILE"),
    Option("pid_file", click.Path(dir_okay=False), _state("codex-api-proxy.pid"), "The daemon's pid file (default: beside the config).",
           ENV + "PID_FILE"),
    Option("allow_no_login", bool, False, "Start even when no Codex login is found.", ENV + "ALLOW_NO_LOGIN"),
    Option("web", bool, False, "Run under mitmweb, to look at every translated request in a browser.",
           ENV + "WEB"),
    Option("web_port", click.IntRange(1, 65535), 8081, "mitmweb's UI port (on 127.0.0.1) with --web.",
           ENV + "WEB_PORT"),
)  # fmt: skip
BY_NAME = {o.name: o for o in OPTIONS}

CONFIG_OPTION = Option("config", click.Path(dir_okay=False), _state("config.toml"),
                       "The TOML config start saves and restart/status/doctor read.", ENV + "CONFIG",
                       aliases=("--state-file",))  # fmt: skip
API_KEY_OPTION = Option("api_key", str, None, f"Local key clients must send; prefer ${API_KEY_ENV} or "
                        "--api-key-file (never saved, never passed on to the daemon's command line).",
                        API_KEY_ENV)  # fmt: skip


def config_path(given: str | None) -> Path:
    return Path(given).expanduser() if given else default_state_dir() / "config.toml"


def files_of(config: Path) -> dict[str, str]:
    """The pid file and log beside a config (`config.toml` -> codex-api-proxy.pid/.log, `b.toml` ->
    b.pid/.log): each config's daemon has its own, so two daemons with two configs never share one."""
    stem = "codex-api-proxy" if config.stem == "config" else config.stem
    return {
        "pid_file": str(config.with_name(stem + ".pid")),
        "log_file": str(config.with_name(stem + ".log")),
    }


def private_dir(path: Path) -> None:
    """A 0700 folder for the config, pid, log and state files (they say where the login is)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically in a 0700 folder."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """The saved config; a missing file is an empty one, a broken one a clear error."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"cannot read the config {path}: {exc}") from None
    unknown = sorted(set(data) - set(BY_NAME) - {"api_key_env", "api_key_from"})
    if unknown:
        raise click.ClickException(f"{path}: unknown setting {unknown[0]!r}")
    return data


def save(path: Path, values: dict[str, Any]) -> None:
    write_private(path, tomli_w.dumps({k: v for k, v in values.items() if v is not None}))


def resolve(ctx: click.Context, given: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """flag > env > config file > default, for every option in OPTIONS. A command that declares the
    option gets flag and env through click; the others (status, stop, doctor) read the env here."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        from_env = os.environ.get(opt.env or "", "").strip() if opt.name not in given else ""
        if given.get(opt.name) is not None:
            value = given[opt.name]
        elif from_env:
            value = _check(opt, from_env, ctx, f"${opt.env}")
        elif opt.name in saved:
            value = _check(opt, saved[opt.name], ctx, f"config setting {opt.name}")
        else:
            value = opt.default() if callable(opt.default) else opt.default
        values[opt.name] = value
    return values


def _check(opt: Option, value: Any, ctx: click.Context, where: str) -> Any:
    """A value from the file or the env goes through the same validation as one from the command line."""
    if opt.type is bool:
        param = click.Option([opt.flags[0]])
        value = value if isinstance(value, bool) else str(value)
    else:
        param = click.Option([opt.flags[0]], type=opt.type)
    try:
        return param.type.convert(value, param, ctx)
    except click.BadParameter as exc:
        raise click.ClickException(f"{where}: {exc.format_message()}") from None


def addon_options(values: dict[str, Any]) -> dict[str, Any]:
    """The codex_* mitmproxy options for these values (unset ones keep the addon's own default)."""
    return {
        o.addon: str(values[o.name]) if isinstance(values[o.name], float) else values[o.name]
        for o in OPTIONS
        if o.addon and values.get(o.name) not in (None, "")
    }


def command_line(values: dict[str, Any]) -> list[str]:
    """These values as flags for the daemon's own `start --foreground` (never a key)."""
    args: list[str] = []
    for opt in OPTIONS:
        value = values.get(opt.name)
        if value is None or value == "":
            continue
        if opt.type is bool:
            on, off = opt.flags[0].split("/")
            args.append(on if value else off)
        else:
            args += [opt.flags[0], str(value)]
    return args
