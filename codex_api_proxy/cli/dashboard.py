"""`codex-api-proxy dashboard`: the URL of the running proxy's usage page (and `--open` to open it).

With a local key in force the URL carries the page's token, derived from the key (core/boundary.py), so
the address a browser keeps in its history opens the page but cannot call the API.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.boundary import dashboard_token
from ..core.options import API_KEY_ENV
from ..core.settings import read_api_key
from .daemon import health, hostport


def page_url(values: dict[str, Any], api_key: str | None) -> str:
    url = f"http://{hostport(values['host'], values['port'])}/dashboard"
    return f"{url}?token={dashboard_token(api_key)}" if api_key else url


def dashboard_lines(values: dict[str, Any], saved: dict[str, Any]) -> tuple[str, list[str]]:
    """(the URL, warnings): the key is this shell's $CODEX_API_PROXY_API_KEY or the key file."""
    api_key = read_api_key(values["api_key_file"]) if values.get("api_key_file") else None
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    warnings = []
    if api_key is None and (saved.get("api_key_env") or saved.get("api_key_from")):
        warnings.append(f"the proxy wants its local API key: set ${API_KEY_ENV} here for a URL that opens")
    if health(values["host"], values["port"]) is None:
        warnings.append(f"no codex-api-proxy answers on {hostport(values['host'], values['port'])} now")
    return page_url(values, api_key), warnings
