"""The main port's clocks (issue 20 row 8): a client connection with no request in it is closed after
CLIENT_IDLE_TIMEOUT, a request head must arrive within CLIENT_HEAD_TIMEOUT of its first byte, and a
request in flight is never cut by either. mitmproxy's own layer is driven with its own test helpers (the
idle clock is moved back rather than waited for); the trickled head goes through the real proxy."""

from __future__ import annotations

import socket
import time

import pytest
from mitmproxy import options
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.test import tflow

from codex_api_proxy.proxy import mitm_patches
from tests.conftest import Proxy


def server_layer() -> tuple[_http1.Http1Server, object, list[commands.Command]]:
    mitm_patches.apply()
    client = tflow.tclient_conn()
    layer = _http1.Http1Server(Context(client, options.Options()))
    return layer, client, list(layer.handle_event(events.Start()))


def wakeups(cmds: list[commands.Command]) -> list[commands.RequestWakeup]:
    return [c for c in cmds if isinstance(c, commands.RequestWakeup)]


def test_an_idle_client_connection_is_closed_without_a_word() -> None:
    layer, _, cmds = server_layer()
    (timer,) = wakeups(cmds)
    assert timer.delay == pytest.approx(mitm_patches.CLIENT_IDLE_TIMEOUT, abs=0.1)
    layer._cxp_waiting -= mitm_patches.CLIENT_IDLE_TIMEOUT  # as if the minute had passed
    out = list(layer.handle_event(events.Wakeup(timer)))
    assert [type(c) for c in out] == [commands.CloseConnection]


def test_a_slow_head_gets_a_408_and_a_request_in_flight_is_not_timed() -> None:
    layer, client, _ = server_layer()
    (head_timer,) = wakeups(list(layer.handle_event(events.DataReceived(client, b"POST /v1/responses HT"))))
    assert head_timer.delay == pytest.approx(mitm_patches.CLIENT_HEAD_TIMEOUT, abs=0.1)
    layer._cxp_head -= mitm_patches.CLIENT_HEAD_TIMEOUT
    out = list(layer.handle_event(events.Wakeup(head_timer)))
    assert isinstance(out[0], commands.SendData) and out[0].data.startswith(b"HTTP/1.1 408")
    assert isinstance(out[1], commands.CloseConnection)

    layer, client, cmds = server_layer()
    idle = wakeups(cmds)[0]
    head = b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
    list(layer.handle_event(events.DataReceived(client, head)))
    assert layer.state != layer.read_headers  # the request is in flight
    assert list(layer.handle_event(events.Wakeup(idle))) == []  # its clock no longer runs


@pytest.mark.slow
def test_a_trickled_head_is_cut_by_the_real_proxy(proxy: Proxy) -> None:
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        started = time.monotonic()
        answer = b""
        head = b"POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1\r\nx-pad: " + b"a" * 400
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.05)
            try:
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            break  # an answer (or the close) came
        else:
            pytest.fail("the proxy took a 20-second head, one byte every 50 ms")
        assert time.monotonic() - started < mitm_patches.CLIENT_HEAD_TIMEOUT + 5
        assert answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer


def test_a_busy_keep_alive_connection_keeps_one_timer() -> None:
    from mitmproxy.proxy.layers.http import ResponseEndOfMessage, ResponseHeaders
    from mitmproxy.test import tutils

    layer, client, cmds = server_layer()
    armed = wakeups(cmds)
    head = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
    for stream_id in (1, 3, 5):
        armed += wakeups(list(layer.handle_event(events.DataReceived(client, head))))
        response = tutils.tresp()
        armed += wakeups(list(layer.handle_event(ResponseHeaders(stream_id, response, False))))
        armed += wakeups(list(layer.handle_event(ResponseEndOfMessage(stream_id))))
        assert layer.state == layer.read_headers  # waiting again, on the same connection
    # one idle clock for the connection's whole life so far (a head that arrives whole needs none)
    assert len([t for t in armed if t.delay > mitm_patches.CLIENT_HEAD_TIMEOUT + 1]) == 1
