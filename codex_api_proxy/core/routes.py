"""The routes the proxy serves, in one table: each path's name, API family and methods.

Read by every side that needs to know a route: the boundary (open routes need no key and take any
body), the local endpoints and the gateway (which route is which, 404 and 405), the metrics (route and
family labels: a client cannot add label values) and the error envelope (Anthropic's or OpenAI's).
Paths are normalised first: `/v1/x?q` and `/x` are the same route.
"""

from __future__ import annotations

from dataclasses import dataclass

ANTHROPIC = "anthropic"  # the family whose errors take Anthropic's envelope


@dataclass(frozen=True)
class Route:
    name: str  # what the endpoints and the gateway dispatch on
    path: str  # the normalised path; its label in the metrics
    family: str  # responses, compact, chat, anthropic, models or local
    methods: frozenset[str]
    open: bool = False  # answered without the local key, any body type (liveness, Claude Code's telemetry)
    page: bool = False  # the usage page: its URL token opens it too, other web pages never (boundary.py)
    prefix: bool = False  # also serves `{path}/{id}`


def _route(name: str, path: str, family: str, *methods: str, **kw: bool) -> Route:
    return Route(name, path, family, frozenset(methods), **kw)


ROUTES: tuple[Route, ...] = (
    _route("responses", "/responses", "responses", "POST"),
    _route("compact", "/responses/compact", "compact", "POST"),
    _route("chat", "/chat/completions", "chat", "POST"),
    _route("messages", "/messages", ANTHROPIC, "POST"),
    _route("count_tokens", "/messages/count_tokens", ANTHROPIC, "POST"),
    _route("models", "/models", "models", "GET"),
    _route("model", "/models/{id}", "models", "GET", prefix=True),
    _route("root", "/", "local", "GET", "HEAD", open=True),
    _route("health", "/health", "local", "GET", "HEAD", open=True),
    _route("ready", "/ready", "local", "GET"),
    _route("metrics", "/metrics", "local", "GET"),
    _route("prometheus", "/metrics/prometheus", "local", "GET"),
    _route("dashboard", "/dashboard", "local", "GET", "HEAD", page=True),
    _route("dashboard_data", "/dashboard/data.json", "local", "GET", "HEAD", page=True),
    _route("dashboard_status", "/dashboard/status.json", "local", "GET", "HEAD", page=True),
    _route("event_logging", "/api/event_logging/batch", "local", "POST", open=True),
    _route("event_logging", "/api/event_logging/v2/batch", "local", "POST", open=True),
)
_EXACT = {r.path: r for r in ROUTES if not r.prefix}
_PREFIXED = tuple((r.path.rsplit("/", 1)[0] + "/", r) for r in ROUTES if r.prefix)


def route_path(path: str) -> str:
    """`/v1/x?q` and `/x` are the same route; the query is ignored (Claude Code adds ?beta=true)."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    return path[3:] or "/" if path.startswith("/v1/") or path == "/v1" else path


def find(path: str) -> Route | None:
    """The route of a normalised path (see route_path), or None."""
    found = _EXACT.get(path)
    if found is None:
        found = next((r for start, r in _PREFIXED if path.startswith(start)), None)
    return found


def is_anthropic_path(path: str) -> bool:
    """Errors on this request path take Anthropic's envelope: its routes, and any path under them."""
    path = route_path(path)
    route = find(path)
    return route.family == ANTHROPIC if route else path.startswith("/messages/")
