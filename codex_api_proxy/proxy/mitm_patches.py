"""The one module that touches mitmproxy's internals: answers mitmproxy writes itself (or does not),
past every hook, replaced once (pinned by tests/test_mitmproxy_contract.py): its HTML error pages
become JSON, a request head is bounded, and a request body it cannot parse gets an answer."""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import RequestProtocolError

from ..core import boundary
from ..core.errors import ProxyError
from .runtime import JSON


def json_error_page(status_code: int, message: str = "") -> bytes:
    """mitmproxy's own error answers (an unparsable request, an unreachable target) as JSON that
    both SDKs read: the Anthropic envelope with the OpenAI error fields inside."""
    error = ProxyError(status_code, f"codex-api-proxy: {message}", code="proxy_error")
    body = {"type": "error", "error": {**error.openai_body()["error"], "type": error.anthropic_type()}}
    response = http.Response.make(status_code, json.dumps(body), {**JSON, "connection": "close"})
    return http1.assemble_response(response)


_read_headers = _http1.Http1Server.read_headers


def bounded_read_headers(self: Any, event: Any) -> Any:
    """mitmproxy buffers a request head until its blank line, however long ("FIXME: protect against
    header size DoS"): past the limit, the client gets a 431 and the connection is closed."""
    yield from _read_headers(self, event)
    if self.state == self.read_headers and len(self.buf) > boundary.MAX_HEADER_BYTES:
        message = f"request head larger than {boundary.MAX_HEADER_BYTES >> 10} KiB"
        yield commands.SendData(self.conn, _http1.make_error_response(431, message))
        yield commands.CloseConnection(self.conn)
        self.state = self.done


_read_body = _http1.Http1Connection.read_body


def answered_read_body(self: Any, event: Any) -> Any:
    """mitmproxy closes a client's connection without a word when it cannot parse the request body
    (a malformed chunk): the client gets a 400 JSON answer before the close, as for a bad head."""
    body = _read_body(self, event)
    reply = None
    while True:
        try:
            command = body.send(reply)
        except StopIteration as stop:
            return stop.value
        if isinstance(command, commands.CloseConnection) and command.connection is self.conn:
            following = next(body, None)  # the protocol error that caused the close, if that is it
            error = following.event if isinstance(following, ReceiveHttp) else None
            if (
                isinstance(error, RequestProtocolError)
                and isinstance(event, events.DataReceived)  # not the close that follows it
                and self.response is None
            ):
                message = error.message[:200]
                yield commands.SendData(self.conn, _http1.make_error_response(400, message))
            yield command
            if following is None:
                return None
            command = following
        reply = yield command


def apply() -> None:
    """Install the replacements (idempotent: the originals are kept aside once)."""
    _http1.make_error_response = json_error_page
    _http1.Http1Server.read_headers = bounded_read_headers
    _http1.Http1Server.read_body = answered_read_body
