"""`codex-api-proxy doctor`: checks a person can act on, each as (ok, label, detail); no secrets."""

from __future__ import annotations

import platform
import socket
import sys
from pathlib import Path

import httpx

from . import __version__
from .credentials import Credentials
from .errors import ProxyError
from .settings import outbound_proxy_from_env

Check = tuple[bool, str, str]


def run_checks(host: str, port: int, auth_file: Path | None) -> list[Check]:
    checks: list[Check] = [
        (sys.version_info >= (3, 12), "python", f"{platform.python_version()} ({sys.executable})"),
        (True, "codex-api-proxy", __version__),
    ]
    try:
        import mitmproxy.version

        checks.append((True, "mitmproxy", mitmproxy.version.VERSION))
    except ImportError:
        checks.append((False, "mitmproxy", "not installed"))
    checks.append(_auth(auth_file))
    proxy = outbound_proxy_from_env()
    checks.append((True, "outbound proxy", proxy.split("@")[-1] if proxy else "none (direct)"))
    checks.append(_port(host, port))
    return checks


def _auth(auth_file: Path | None) -> Check:
    creds = Credentials(auth_file)
    try:
        info = creds.describe()
    except ProxyError as error:
        return False, "login", error.message
    detail = f"{info['mode']} mode from {info['path']}"
    expires = info.get("expires_in")
    if expires is not None:
        detail += f"; access token {'expired' if expires < 0 else f'valid for {expires // 60} min'} (refreshed on use)"
    return True, "login", detail


def _port(host: str, port: int) -> Check:
    target = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        r = httpx.get(f"http://{target}:{port}/health", timeout=1.0, trust_env=False)
        version = r.json().get("version") if r.status_code == 200 else None
        if version:
            return True, "proxy", f"codex-api-proxy {version} answering on http://{target}:{port}"
    except (httpx.HTTPError, ValueError):
        pass
    with socket.socket() as s:
        try:
            s.bind((target, port))
        except OSError as exc:
            return False, "port", f"{target}:{port} is taken by another program ({exc.strerror})"
    return True, "port", f"{target}:{port} is free (proxy not running)"
