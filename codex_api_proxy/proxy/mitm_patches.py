"""The one module that touches mitmproxy's internals, replaced once and pinned by
tests/test_mitmproxy_contract.py: its HTML error pages become JSON; a request head is bounded in size;
a client connection waiting for a request is timed (mitmproxy's one clock, `tcp_timeout`, counts
any traffic, so it cannot tell a keep-alive connection nobody uses from a long answer in the making);
and a request body it cannot parse gets an answer, not a silent close."""

from __future__ import annotations

import json
import time
from typing import Any

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import RequestProtocolError

from ..core.errors import ProxyError
from ..core.limits import CLIENT_HEAD_TIMEOUT, CLIENT_IDLE_TIMEOUT, KIB, MAX_HEAD
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


_handle_event = _http1.Http1Server._handle_event


def timed_handle_event(self: Any, event: Any) -> Any:
    """Http1Server's event handler, timing the wait for a request: it notes when the connection began
    waiting and when a head began arriving, and keeps at most one wakeup pending per clock (a busy
    keep-alive connection does not pile them up); only this wrapper receives them. A request in flight
    is never timed here (the relay and the upstream bound it)."""
    timers: dict[str, Any] = self.__dict__.setdefault("_cxp_timers", {})
    if isinstance(event, events.Wakeup) and event.command in timers.values():
        clock = "head" if timers.get("head") is event.command else "idle"
        del timers[clock]
        yield from _on_wakeup(self, timers, clock)
        return
    yield from _handle_event(self, event)
    if self.state != self.read_headers:
        self._cxp_waiting = self._cxp_head = None
        return
    now = time.monotonic()
    if getattr(self, "_cxp_waiting", None) is None:  # began waiting for a request: the idle clock
        self._cxp_waiting, self._cxp_head = now, None
        if "idle" not in timers:
            yield from _arm(timers, "idle", CLIENT_IDLE_TIMEOUT)
    if self.buf and self._cxp_head is None:  # a head began arriving: its deadline
        self._cxp_head = now
        if "head" not in timers:
            yield from _arm(timers, "head", CLIENT_HEAD_TIMEOUT)


def _arm(timers: dict[str, Any], clock: str, delay: float) -> Any:
    timers[clock] = commands.RequestWakeup(max(delay, 0.0) + 0.01)
    yield timers[clock]


def _on_wakeup(self: Any, timers: dict[str, Any], clock: str) -> Any:
    if self.state != self.read_headers or self._cxp_waiting is None:
        return  # a request is in flight: the clocks start again when the connection next waits
    now = time.monotonic()
    if clock == "head":
        if self._cxp_head is None:
            return  # that head became a request, and no new one has begun
        left = self._cxp_head + CLIENT_HEAD_TIMEOUT - now
        if left <= 0:
            message = f"request head not received within {CLIENT_HEAD_TIMEOUT:.0f} s"
            yield commands.SendData(self.conn, _http1.make_error_response(408, message))
            yield commands.CloseConnection(self.conn)
            self.state = self.done
            return
    else:
        left = self._cxp_waiting + CLIENT_IDLE_TIMEOUT - now
        if left <= 0 and self._cxp_head is None:
            yield commands.CloseConnection(self.conn)  # idle: closed without a word, as keep-alive allows
            self.state = self.done
            return
        if self._cxp_head is not None:
            return  # a head is arriving: its own clock decides
    yield from _arm(timers, clock, left)  # woken early (the clock restarted since): the rest


def apply() -> None:
    """Install the replacements (idempotent: the originals are kept aside once, at import)."""
    _http1.make_error_response = json_error_page
    _http1.Http1Server.read_headers = bounded_read_headers
    _http1.Http1Server._handle_event = timed_handle_event
    _http1.Http1Server.read_body = answered_read_body
