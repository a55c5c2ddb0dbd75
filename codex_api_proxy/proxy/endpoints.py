"""The addon for answers that need no upstream: liveness, readiness, metrics, Claude Code's probes."""

from __future__ import annotations

from mitmproxy import http

from .. import __version__
from ..core.errors import ProxyError
from ..core.metrics import CONTENT_TYPE as METRICS_TEXT
from ..core.routes import route_path
from .runtime import Runtime, fail_closed, handled, json_response


class LocalEndpoints:
    """Answers that need no upstream: liveness, readiness, metrics, Claude Code's probes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if handled(flow):
            return
        path, method = route_path(flow.request.path), flow.request.method
        rt = self.runtime
        if path == "/health" and method in ("GET", "HEAD"):
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
        elif path == "/" and method in ("GET", "HEAD"):
            flow.response = json_response(200, {"ok": True, "service": "codex-api-proxy"})
        if flow.response and method == "HEAD":
            flow.response.content = b""  # a HEAD answer has headers only
        elif path.startswith("/api/event_logging/") and method == "POST":
            flow.response = json_response(200, {})
        elif path == "/ready" and method == "GET":
            flow.response = self.ready()
        elif path == "/metrics" and method == "GET":
            flow.response = json_response(200, rt.metrics.json())
        elif path == "/metrics/prometheus" and method == "GET":
            flow.response = http.Response.make(200, rt.metrics.text(), {"content-type": METRICS_TEXT})

    def ready(self) -> http.Response:
        rt = self.runtime
        try:
            info = rt.credentials.describe()
        except ProxyError as error:
            return json_response(503, {"ok": False, "error": error.message, "code": error.code})
        upstream = rt.settings.upstream_url if info.get("mode") == "chatgpt" else rt.settings.openai_url
        return json_response(200, {"ok": True, **info, "upstream": upstream})
