"""The boundary addon: refuses, on the request head, what may not reach the subscription."""

from __future__ import annotations

import logging

from mitmproxy import http

from ..core import boundary, routes
from ..core.errors import ProxyError
from ..core.headers import CREDENTIALS
from ..core.routes import is_anthropic_path
from ..relay.server import FLOW_HEADER, Canned
from .runtime import ORIGIN, REFUSED, Runtime, error_response, to_relay

log = logging.getLogger("codex_api_proxy")


_CREDENTIALS = frozenset(name.encode() for name in CREDENTIALS)


def _discard(chunk: bytes) -> list[bytes]:
    """The body of a refused request: read from the client (it may still be sending) and dropped."""
    return []


def mask_credentials(request: http.Request) -> None:
    """Once checked, a client's key is of no further use on the flow, and mitmweb (its list, File >
    Save) and `mitmdump --set flow_detail=3` show every flow's headers: the value is masked."""
    fields = request.headers.fields
    if any(name.lower() in _CREDENTIALS for name, _ in fields):
        request.headers.fields = tuple(
            (name, b"***" if name.lower() in _CREDENTIALS else value) for name, value in fields
        )


class Boundary:
    """Refuses, on the head and before any body is read, what may not reach the subscription
    (core/boundary.py says what and why): the local key, Host, Origin, content type, declared size."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            path = routes.route_path(flow.request.path)
            route = routes.find(path)
            token = ""
            if route is not None and route.page:
                token = flow.request.query.get("token", "")
                if token:
                    flow.request.query["token"] = "***"  # not in mitmweb's list nor in a dump
            headers, error = boundary.check_head(
                self.runtime.policy, flow.request.method, path, flow.request.headers.fields, token
            )
            mask_credentials(flow.request)
            if error is None:
                origin = headers.get("origin")
                if origin is not None:
                    flow.metadata[ORIGIN] = origin
                    if flow.request.method == "OPTIONS":
                        flow.response = http.Response.make(204, b"", boundary.preflight_headers(origin))
                return
        except Exception:
            log.exception("boundary check failed")
            error = ProxyError(500, "codex-api-proxy failed to check this request", code="internal_error")
        mask_credentials(flow.request)
        where = flow.request.path.split("?", 1)[0][:200]  # a query may carry a token
        log.info("refused %s %s: %s", flow.request.method, where, error.message)
        self.refuse(flow, error)

    def response(self, flow: http.HTTPFlow) -> None:
        self.finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.finish(flow)

    def finish(self, flow: http.HTTPFlow) -> None:
        """A refused flow's canned answer is dropped if mitmproxy never sent the flow to the relay.
        (Not named `done`: that is mitmproxy's shutdown event, which would call it with no flow.)"""
        if REFUSED in flow.metadata and self.runtime.relay is not None:
            self.runtime.relay.forget(flow.id)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """CORS headers, for the origins the person allowed (no others get this far)."""
        origin = flow.metadata.get(ORIGIN)
        if origin and flow.response is not None:
            flow.response.headers.update(boundary.cors_headers(origin))

    def refuse(self, flow: http.HTTPFlow, error: ProxyError) -> None:
        """Answer now. A request with a body would have it read (buffered) before mitmproxy sends an
        answer set here, so such a flow is streamed instead: its body dropped as it comes, its head
        sent on to the relay, which answers with this error at once."""
        response = error_response(error, is_anthropic_path(flow.request.path))
        request = flow.request
        has_body = (
            request.headers.get("content-length", "0") not in ("", "0")
            or "transfer-encoding" in request.headers
        )
        relay = self.runtime.relay
        if not has_body or relay is None:
            flow.response = response
            return
        relay.expect(flow.id, Canned(response.status_code, dict(response.headers), response.content or b""))
        request.stream = _discard
        to_relay(flow, relay.port, {"content-length": "0", FLOW_HEADER: flow.id})
        flow.metadata[REFUSED] = error.code or str(error.status)  # plain data: mitmweb saves metadata
