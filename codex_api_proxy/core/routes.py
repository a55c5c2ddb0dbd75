"""The routes the proxy serves, by their normalised path: `/v1/x?q` and `/x` are the same route."""

from __future__ import annotations


def route_path(path: str) -> str:
    """`/v1/x?q` and `/x` are the same route; the query is ignored (Claude Code adds ?beta=true)."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    return path[3:] or "/" if path.startswith("/v1/") or path == "/v1" else path


def is_anthropic_path(path: str) -> bool:
    return route_path(path).startswith("/messages")
