"""Settings of a running proxy: one frozen dataclass, built once from mitmproxy options and env
(the options, their defaults and checks: options.py)."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .options import default_of
from .proxies import Proxies

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def default_auth_path() -> Path:
    home = os.environ.get("CODEX_HOME", "").strip()
    base = Path(home).expanduser() if home else Path.home() / ".codex"
    return base / "auth.json"


def is_loopback(host: str) -> bool:
    """A loopback name or a parsed loopback address; `127.evil.example` is neither."""
    host = host.strip().lower().strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_api_key(path: str) -> str:
    """A local API key from a file, so it never appears in any process's argv. The file must be the
    person's alone (no group or other bits, like ~/.ssh keys): a key others can read guards nothing."""
    file = Path(path).expanduser()
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        raise ValueError(f"API key file {path} has mode {mode:04o}, readable by others: chmod 600 it")
    key = file.read_text().strip()
    if not key:
        raise ValueError(f"API key file {path} is empty")
    return key


@dataclass(frozen=True)
class Settings:
    upstream_url: str = default_of("upstream_url")
    openai_url: str = default_of("openai_url")
    auth_path: Path = field(default_factory=default_auth_path)
    api_key: str | None = None  # local key clients must present; None = no local auth (loopback only)
    proxies: Proxies = field(default_factory=Proxies)  # outbound proxies, checked at start (Proxies.check)
    connect_timeout: float = default_of("connect_timeout")
    first_byte_timeout: float = default_of("first_byte_timeout")  # reasoning models think for minutes
    idle_timeout: float = default_of("idle_timeout")  # silence inside a stream before it is declared dead
    heartbeat: float = default_of("heartbeat")  # keep-alive to the client while the upstream is silent
    models_cache_ttl: float = default_of("models_cache_ttl")
    model_map: dict[str, str] = field(default_factory=dict)  # claude family -> GPT model
    expose_reasoning: bool = False  # chat clients get `reasoning_content`

    def __repr__(self) -> str:  # never print the key
        return f"Settings(upstream_url={self.upstream_url!r}, auth_path={str(self.auth_path)!r}, api_key={'set' if self.api_key else None})"
