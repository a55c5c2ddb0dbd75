"""Settings of a running proxy: one frozen dataclass, built once from mitmproxy options and env."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_UPSTREAM_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
API_KEY_ENV = "CODEX_API_PROXY_API_KEY"
UPSTREAM_URL_ENV = "CODEX_API_PROXY_UPSTREAM_URL"
OPENAI_URL_ENV = "CODEX_API_PROXY_OPENAI_URL"
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
    upstream_url: str = DEFAULT_UPSTREAM_URL
    openai_url: str = DEFAULT_OPENAI_URL
    auth_path: Path = field(default_factory=default_auth_path)
    api_key: str | None = None  # local key clients must present; None = no local auth (loopback only)
    outbound_proxy: str | None = None
    connect_timeout: float = 15.0
    first_byte_timeout: float = 300.0  # upstream status line; reasoning models can think for minutes
    idle_timeout: float = 300.0  # silence inside a stream before it is declared dead
    heartbeat: float = 10.0  # keep-alive to the client while the upstream is silent
    models_cache_ttl: float = 300.0
    model_map: dict[str, str] = field(default_factory=dict)  # claude family -> GPT model
    expose_reasoning: bool = False  # chat clients get `reasoning_content`

    def __repr__(self) -> str:  # never print the key
        return f"Settings(upstream_url={self.upstream_url!r}, auth_path={str(self.auth_path)!r}, api_key={'set' if self.api_key else None})"


def parse_model_map(spec: str) -> dict[str, str]:
    """`opus=gpt-5.5,haiku=gpt-5.4-mini` -> dict; raises ValueError on a malformed entry."""
    result: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        family, sep, model = entry.partition("=")
        if not sep or not family.strip() or not model.strip():
            raise ValueError(f"model map entry {entry!r} is not family=model")
        result[family.strip().lower()] = model.strip()
    return result
