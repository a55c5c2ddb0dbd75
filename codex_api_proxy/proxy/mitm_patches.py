"""The one module that touches mitmproxy's internals: two answers mitmproxy writes itself, past every
hook, replaced once (pinned by tests/test_mitmproxy_contract.py): its HTML error pages become JSON, and
a request head is bounded."""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import _http1

from ..core.errors import ProxyError
from ..core.limits import KIB, MAX_HEAD
from .runtime import JSON


def json_error_page(status_code: int, message: str = "") -> bytes:
    """mitmproxy's own error answers (an unparsable request, an unreachable target) as JSON that
    both SDKs read: the Anthropic envelope with the OpenAI error fields inside."""
    error = ProxyError(status_code, f"codex-api-proxy: {message}", code="proxy_error")
    response = http.Response.make(
        status_code, json.dumps(error.either_body()), {**JSON, "connection": "close"}
    )
    return http1.assemble_response(response)


_read_headers = _http1.Http1Server.read_headers


def bounded_read_headers(self: Any, event: Any) -> Any:
    """mitmproxy buffers a request head until its blank line, however long ("FIXME: protect against
    header size DoS"): past the limit, the client gets a 431 and the connection is closed."""
    yield from _read_headers(self, event)
    if self.state == self.read_headers and len(self.buf) > MAX_HEAD:
        message = f"request head larger than {MAX_HEAD // KIB} KiB"
        yield commands.SendData(self.conn, _http1.make_error_response(431, message))
        yield commands.CloseConnection(self.conn)
        self.state = self.done


def apply() -> None:
    """Install both replacements (idempotent: the original head reader is kept aside once)."""
    _http1.make_error_response = json_error_page
    _http1.Http1Server.read_headers = bounded_read_headers
