"""What the addons of one proxy share (`Runtime`), and the few flow helpers every addon uses."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from ..auth.credentials import Credentials, Refreshes, wait_for_refreshes
from ..core import boundary, models
from ..core.cache_health import CacheHealth
from ..core.conversations import ConversationStore
from ..core.errors import ProxyError
from ..core.metrics import Metrics
from ..core.quota import QuotaBook
from ..core.routes import is_anthropic_path, route_path
from ..core.settings import Settings
from ..core.tokens import Calibration
from ..relay.backend import Backend
from ..relay.server import RelayServer
from ..translate.tool_order import ToolOrder

log = logging.getLogger("codex_api_proxy")

JSON = {"content-type": "application/json"}
REFUSED = "codex_api_proxy.refused"  # flow.metadata: the boundary answered this flow
ORIGIN = "codex_api_proxy.origin"  # flow.metadata: an allowed browser origin, for the CORS answer


def error_response(error: ProxyError, anthropic_dialect: bool) -> http.Response:
    return http.Response.make(error.status, error.encoded(anthropic_dialect), {**JSON, **error.headers()})


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> http.Response:
    return http.Response.make(status, json.dumps(body), {**JSON, **(headers or {})})


@dataclass
class Runtime:
    """What the addons of one proxy share: settings, credentials, the upstream, the counters and the
    per-conversation records (the gateway gives the translators those as TranslatorOptions)."""

    settings: Settings = field(default_factory=Settings)
    credentials: Credentials = field(default_factory=Credentials)
    metrics: Metrics = field(default_factory=Metrics)
    backend: Backend | None = None
    quota: QuotaBook = field(default_factory=QuotaBook)
    relay: RelayServer | None = None
    models: models.ModelCache = field(default_factory=lambda: models.ModelCache(300))
    conversations: ConversationStore = field(default_factory=ConversationStore.from_env)
    tool_order: ToolOrder = field(default_factory=ToolOrder)  # per-conversation tool order (prompt cache)
    policy: boundary.Policy = field(default_factory=boundary.Policy)
    cache_health: CacheHealth = field(default_factory=CacheHealth)
    calibration: Calibration = field(default_factory=Calibration)  # token counts, by conversation
    refreshes: Refreshes = field(default_factory=set)  # token refreshes in flight, of any Credentials
    restarting: asyncio.Task[None] | None = None
    configured: bool = False  # settings were built from the options at least once
    inspecting: bool = False  # mitmweb keeps bodies: flows also carry the client's original request

    async def start_transport(self) -> None:
        self.backend = Backend(self.settings, self.credentials)
        self.relay = RelayServer(self.backend, self.settings.heartbeat)
        await self.relay.start()

    async def stop_transport(self) -> None:
        if self.relay:
            await self.relay.stop()
        await wait_for_refreshes(
            self.refreshes
        )  # a sent refresh needs the upstream client to get and save its answer
        if self.backend:
            await self.backend.aclose()

    async def restart_transport(self) -> None:
        await self.stop_transport()
        await self.start_transport()


def fail_closed(hook: Callable[..., Awaitable[None] | None]) -> Callable[..., Awaitable[None]]:
    """mitmproxy forwards a flow unmodified when a hook raises: answer with a JSON error instead."""

    @functools.wraps(hook)
    async def wrapper(self: Any, flow: http.HTTPFlow) -> None:
        try:
            result = hook(self, flow)
            if asyncio.iscoroutine(result):
                await result
        except ProxyError as error:
            flow.response = error_response(error, is_anthropic_path(flow.request.path))
        except Exception:
            log.exception("%s hook failed for %s", hook.__name__, route_path(flow.request.path))
            error = ProxyError(500, "codex-api-proxy failed to handle this request", code="internal_error")
            flow.response = error_response(error, is_anthropic_path(flow.request.path))

    return wrapper


def to_relay(flow: http.HTTPFlow, port: int, headers: dict[str, str]) -> None:
    """Point the flow at the relay with exactly these headers, keeping the client's path (mitmweb
    lists it by what the client called). Set on the request's data: the url setter re-parses."""
    data = flow.request.data
    data.scheme, data.host, data.port = b"http", "127.0.0.1", port
    fields = [(b"host", b"127.0.0.1:%d" % port)]
    fields += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k != "host"]
    flow.request.headers = http.Headers(fields)


def handled(flow: http.HTTPFlow) -> bool:
    """Answered already, or refused by the boundary (whose answer may still be on its way)."""
    return flow.response is not None or REFUSED in flow.metadata
