"""`codex-api-proxy doctor`: checks a person can act on, each as (ok, label, detail); no secrets.

It looks where the config says the daemon is, so it agrees with `status` after `start --port 8799`,
and ends with the client settings that match this proxy.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..auth.authfile import jwt_claims
from ..auth.credentials import Credentials
from ..core import models
from ..core.errors import ProxyError
from ..core.options import API_KEY_ENV, DEFAULT_PORT, parse_model_map
from ..core.settings import is_loopback
from .daemon import Daemon, get_json, health, hostport, is_ours, port_problem

Check = tuple[bool | None, str, str]  # ok, FAIL, or None: a warning (shown, not failing)
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
              "no_proxy")  # fmt: skip


def run_checks(values: dict[str, Any], saved: dict[str, Any]) -> list[Check]:
    checks: list[Check] = [
        (sys.version_info >= (3, 12), "python", f"{platform.python_version()} ({sys.executable})"),
        (True, "codex-api-proxy", __version__),
    ]
    try:
        import mitmproxy.version

        checks.append((True, "mitmproxy", mitmproxy.version.VERSION))
    except ImportError:
        checks.append((False, "mitmproxy", "not installed"))
    checks.append((True, "config", f"{values['config']}" + ("" if saved else " (none saved yet: defaults)")))
    checks += _auth(values.get("auth_file"))
    checks += _daemon(values)
    checks.append(_bind(values["host"], keyed(values, saved)))
    checks.append(_outbound(values.get("proxy")))
    return checks


def _auth(auth_file: str | None) -> list[Check]:
    creds = Credentials(Path(auth_file).expanduser() if auth_file else None)
    try:
        info = creds.describe()
    except ProxyError as error:
        return [(False, "login", error.message)]
    checks: list[Check] = [(True, "login", f"{info['mode']} mode from {info['path']}")]
    if info["mode"] == "chatgpt":
        checks.append(_access_token(creds.path, info.get("expires_in")))
    return checks


def _access_token(path: Path, expires_in: int | None) -> Check:
    """What can be told about the access token offline: its JWT shape and expiry. Its signature, and
    whether the backend takes it, only the backend can say: doctor makes no network call."""
    unverified = "not verified here: its signature and whether the backend accepts it (no network call)"
    try:
        tokens = json.loads(path.read_text()).get("tokens") or {}
    except (OSError, ValueError, AttributeError):
        tokens = {}
    token = tokens.get("access_token") if isinstance(tokens, dict) else None
    if not isinstance(token, str) or token.count(".") != 2:
        return None, "access token", f"not a JWT (ChatGPT's are), so its expiry cannot be read; {unverified}"
    claims = jwt_claims(token)
    if not claims:
        return False, "access token", "shaped like a JWT, but its payload does not decode; run `codex login`"
    if expires_in is None:
        return None, "access token", f"a JWT without an expiry (exp); {unverified}"
    state = "expired" if expires_in < 0 else f"valid for {expires_in // 60} min"
    refresh = "refreshed on use" if tokens.get("refresh_token") else "no refresh token: `codex login` again"
    return True, "access token", f"a JWT, access token {state} ({refresh}); {unverified}"


def _daemon(values: dict[str, Any]) -> list[Check]:
    host, port = values["host"], int(values["port"])
    daemon = Daemon(Path(values["pid_file"]).expanduser(), Path(values["log_file"]).expanduser(), host, port)
    pid = daemon.read_pid()
    info = health(host, port)
    if info is not None:
        who = f"pid {pid}" if pid and is_ours(pid) else "not started by this config's pid file"
        return [
            (
                True,
                "daemon",
                f"codex-api-proxy {info.get('version')} answering on http://{host}:{port} ({who})",
            )
        ]
    checks: list[Check] = []
    if pid is not None:
        checks.append((False, "daemon", f"pid file {daemon.pid_file} names pid {pid}, which does not answer "
                       f"on {host}:{port} (stale; `codex-api-proxy status` removes it)"))  # fmt: skip
    else:
        checks.append((True, "daemon", f"not running (`codex-api-proxy start` listens on {host}:{port})"))
    problem = port_problem(host, port)
    checks.append((problem is None, "port", problem or f"{host}:{port} is free"))
    return checks


def _bind(host: str, has_key: bool) -> Check:
    if is_loopback(host):
        return True, "bind", f"{host} (loopback: only this machine can connect)"
    if has_key:
        return True, "bind", f"{host} (reachable from the network; clients need the local API key)"
    return False, "bind", f"{host} is not loopback and no local API key is set ({API_KEY_ENV}); start refuses"


def _outbound(explicit: str | None) -> Check:
    def shown(value: str) -> str:  # user:password@ never printed
        parts = urlsplit(value)
        return value.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1]) if parts.netloc else value

    found = [f"{name}={shown(os.environ[name])}" for name in PROXY_VARS if os.environ.get(name, "").strip()]
    if explicit:
        return True, "outbound proxy", f"--proxy {shown(explicit)} (NO_PROXY not applied)"
    return True, "outbound proxy", ", ".join(found) if found else "none (direct connection)"


def keyed(values: dict[str, Any], saved: dict[str, Any]) -> bool:
    """A local key is in force: a key file, the variable in this shell, or one the daemon was started with."""
    return bool(
        values.get("api_key_file")
        or os.environ.get(API_KEY_ENV)
        or saved.get("api_key_env")
        or saved.get("api_key_from")
    )


def context_settings(values: dict[str, Any], api_key: str | None = None) -> dict[str, str]:
    """Claude Code's window settings for the configured model map, from the running daemon's catalog
    (empty when no daemon answers: the windows come from the account's catalog)."""
    key = api_key or os.environ.get(API_KEY_ENV)
    listing = get_json(values["host"], values["port"], "/v1/models", key)
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return {}
    return models.claude_code_settings(parse_model_map(values.get("model_map") or ""), data)


def statusline_command(values: dict[str, Any]) -> str:
    """Claude Code's statusLine command: it finds the proxy as `status` does; a port named here holds
    even when Claude Code runs with another environment."""
    port = int(values["port"])
    return "codex-api-proxy statusline" + (f" --port {port}" if port != DEFAULT_PORT else "")


def client_snippets(values: dict[str, Any], saved: dict[str, Any]) -> str:
    """Claude Code's settings.json and the Codex CLI's config.toml for this proxy."""
    base = f"http://{hostport(values['host'], values['port'])}"
    key_in_force = keyed(values, saved)
    token = f"<the value of ${API_KEY_ENV}>" if key_in_force else "unused"
    settings = {"env": {"ANTHROPIC_BASE_URL": base, "ANTHROPIC_AUTH_TOKEN": token,
                        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", **context_settings(values)},
                "statusLine": {"type": "command", "command": statusline_command(values)}}  # fmt: skip
    codex = (
        'model = "gpt-5.5"\nmodel_provider = "codex-api-proxy"\n\n[model_providers.codex-api-proxy]\n'
        f'name = "codex-api-proxy"\nbase_url = "{base}/v1"\nwire_api = "responses"\n'
        + (f'env_key = "{API_KEY_ENV}"\n' if key_in_force else "")
        + "\n[features]  # off: with them the Codex CLI contacts OpenAI's hosts at start\nplugins = false\napps = false\n"
    )
    return (
        "For one run, `codex-api-proxy claude` / `codex-api-proxy codex` set all of this themselves.\n\n"
        "Claude Code (~/.claude/settings.json):\n"
        + json.dumps(settings, indent=2)
        + "\n\nCodex CLI (~/.codex/config.toml):\n"
        + codex
        + f"\nOpenAI SDKs: OPENAI_BASE_URL={base}/v1 OPENAI_API_KEY={token}"
    )
