"""The addon for answers that need no upstream: liveness, readiness, metrics, Claude Code's probes."""

from __future__ import annotations

from mitmproxy import http

from .. import __version__
from ..core import routes
from ..core.errors import ProxyError
from ..core.metrics import CONTENT_TYPE as METRICS_TEXT
from .runtime import Runtime, fail_closed, handled, json_response


class LocalEndpoints:
    """Answers that need no upstream: liveness, readiness, metrics, Claude Code's probes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if handled(flow):
            return
        route, method = routes.find(routes.route_path(flow.request.path)), flow.request.method
        if route is None or route.family != "local" or method not in route.methods:
            return  # the gateway's (it answers 404 and 405 too)
        rt = self.runtime
        if route.name == "health":
            flow.response = json_response(
                200,
                {
                    "ok": True,
                    "version": __version__,
                    "uptime_seconds": round(rt.metrics.uptime(), 3),
                    "quota": rt.quota.as_json(rt.credentials.account_id or ""),
                    "store": rt.conversations.figures(),
                },
            )
        elif route.name == "root":
            flow.response = json_response(200, {"ok": True, "service": "codex-api-proxy"})
        elif route.name == "event_logging":
            flow.response = json_response(200, {})
        elif route.name == "ready":
            flow.response = self.ready()
        elif route.name == "metrics":
            flow.response = json_response(200, rt.metrics.json())
        elif route.name == "prometheus":
            flow.response = http.Response.make(200, rt.metrics.text(), {"content-type": METRICS_TEXT})
        if flow.response and method == "HEAD":
            flow.response.content = b""  # a HEAD answer has headers only

    def ready(self) -> http.Response:
        rt = self.runtime
        try:
            info = rt.credentials.describe()
        except ProxyError as error:
            return json_response(503, {"ok": False, "error": error.message, "code": error.code})
        upstream = rt.settings.upstream_url if info.get("mode") == "chatgpt" else rt.settings.openai_url
        return json_response(200, {"ok": True, **info, "upstream": upstream})
