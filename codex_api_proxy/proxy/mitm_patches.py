"""The one module that touches mitmproxy's internals, replaced once and pinned by
tests/test_mitmproxy_contract.py: its HTML error pages become JSON; a request head is bounded in size;
and a client connection waiting for a request is timed (mitmproxy's one clock, `tcp_timeout`, counts
any traffic, so it cannot tell a keep-alive connection nobody uses from a long answer in the making)."""

from __future__ import annotations

import json
import time
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http import _http1

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


CLIENT_IDLE_TIMEOUT = 60.0  # a client connection with no request in it is closed after this
CLIENT_HEAD_TIMEOUT = 5.0  # a request head must arrive within this of its first byte (408 after)

_handle_event = _http1.Http1Server._handle_event


def timed_handle_event(self: Any, event: Any) -> Any:
    """Http1Server's event handler, timing the wait for a request: it notes when the connection began
    waiting and when a head began arriving, and asks for a wakeup at each deadline; only this wrapper
    receives those. A request in flight is never timed here (the relay and the upstream bound it)."""
    timers: list[Any] = self.__dict__.setdefault("_cxp_timers", [])
    if isinstance(event, events.Wakeup) and event.command in timers:
        timers.remove(event.command)
        yield from _waited_too_long(self, timers)
        return
    yield from _handle_event(self, event)
    if self.state != self.read_headers:
        self._cxp_waiting = self._cxp_head = None
        return
    now = time.monotonic()
    if getattr(self, "_cxp_waiting", None) is None:  # began waiting for a request: the idle clock
        self._cxp_waiting, self._cxp_head = now, None
        timers.append(commands.RequestWakeup(CLIENT_IDLE_TIMEOUT + 0.01))
        yield timers[-1]
    if self.buf and self._cxp_head is None:  # a head began arriving: its deadline
        self._cxp_head = now
        timers.append(commands.RequestWakeup(CLIENT_HEAD_TIMEOUT + 0.01))
        yield timers[-1]


def _waited_too_long(self: Any, timers: list[Any]) -> Any:
    if self.state != self.read_headers or self._cxp_waiting is None:
        return  # a request came since: the clocks start again when the connection next waits
    now = time.monotonic()
    head = self._cxp_head
    if head is not None and now - head >= CLIENT_HEAD_TIMEOUT:
        message = f"request head not received within {CLIENT_HEAD_TIMEOUT:.0f} s"
        yield commands.SendData(self.conn, _http1.make_error_response(408, message))
    elif head is not None or now - self._cxp_waiting < CLIENT_IDLE_TIMEOUT:
        if not timers:  # woken early (a request came and went in between): wait for the rest
            due = head + CLIENT_HEAD_TIMEOUT if head is not None else self._cxp_waiting + CLIENT_IDLE_TIMEOUT
            timers.append(commands.RequestWakeup(due - now + 0.01))
            yield timers[-1]
        return
    yield commands.CloseConnection(self.conn)  # idle, or a head too slow: closed
    self.state = self.done


def apply() -> None:
    """Install the replacements (idempotent: the originals are kept aside once, at import)."""
    _http1.make_error_response = json_error_page
    _http1.Http1Server.read_headers = bounded_read_headers
    _http1.Http1Server._handle_event = timed_handle_event
