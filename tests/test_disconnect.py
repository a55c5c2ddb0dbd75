"""A client that goes away stops its upstream request: in every phase, for every family.

Each generation burns the person's quota; pressing Esc in Claude Code must end it. The fake backend
records when the proxy closed the upstream connection of a request still being answered.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Recorded, Turn, text

from .conftest import Proxy

BODIES = {
    "responses": ("/v1/responses", {"model": "gpt-5.5", "input": "hi"}),
    "chat": ("/v1/chat/completions", {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}),
    "messages": ("/v1/messages", {"model": "gpt-5.5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}),
}  # fmt: skip
CLOSE_BOUND = 1.0  # the bound: upstream closed within 1 s of the client leaving


def open_request(proxy: Proxy, family: str, stream: bool) -> socket.socket:
    path, body = BODIES[family]
    data = json.dumps({**body, "stream": stream}).encode()
    port = int(proxy.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
    sock.sendall(f"{head}content-length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def read_until(sock: socket.socket, marker: bytes, times: int = 1, limit: float = 20) -> bytes:
    got = b""
    deadline = time.monotonic() + limit
    while got.count(marker) < times:
        assert time.monotonic() < deadline, f"never saw {marker!r}: {got[-300:]!r}"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {marker!r}: {got[-300:]!r}"
        got += chunk
    return got


def upstream_request(fake: FakeBackend, before: int) -> Recorded:
    deadline = time.monotonic() + 20
    while len(fake.responses_requests) <= before:
        assert time.monotonic() < deadline, "the request never reached the fake backend"
        time.sleep(0.01)
    return fake.responses_requests[before]


def closed_within(rec: Recorded, left_at: float, bound: float = CLOSE_BOUND) -> float:
    deadline = left_at + bound + 5  # wait a little past the bound so a miss shows by how much
    while rec.closed_at is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.closed_at is not None, "the upstream request was never closed"
    return rec.closed_at - left_at


Phase = Callable[[Proxy, FakeBackend, str], tuple[Recorded, float]]


def before_headers(proxy: Proxy, fake: FakeBackend, family: str) -> tuple[Recorded, float]:
    fake.enqueue(Turn(delay_headers=15))
    before = len(fake.responses_requests)
    sock = open_request(proxy, family, stream=True)
    rec = upstream_request(fake, before)
    time.sleep(0.3)
    left = time.monotonic()
    sock.close()
    return rec, left


def in_silence(proxy: Proxy, fake: FakeBackend, family: str) -> tuple[Recorded, float]:
    fake.enqueue(Turn(output=[text("never sent")], stall=12))
    before = len(fake.responses_requests)
    sock = open_request(proxy, family, stream=True)
    read_until(sock, b"\r\n\r\n")  # the stream has begun; the model is "thinking"
    rec = upstream_request(fake, before)
    time.sleep(0.5)
    left = time.monotonic()
    sock.close()
    return rec, left


def mid_stream(proxy: Proxy, fake: FakeBackend, family: str) -> tuple[Recorded, float]:
    fake.enqueue(Turn(output=[text("word " * 200, chunks=200)], delay=0.05))
    before = len(fake.responses_requests)
    sock = open_request(proxy, family, stream=True)
    read_until(sock, b"word", times=5)  # some text has arrived, most is still to come
    rec = upstream_request(fake, before)
    left = time.monotonic()
    sock.close()
    return rec, left


def not_streaming(proxy: Proxy, fake: FakeBackend, family: str) -> tuple[Recorded, float]:
    fake.enqueue(Turn(output=[text("too late")], stall=12))
    before = len(fake.responses_requests)
    sock = open_request(proxy, family, stream=False)
    rec = upstream_request(fake, before)
    time.sleep(0.5)
    left = time.monotonic()
    sock.close()
    return rec, left


@pytest.mark.parametrize("family", list(BODIES))
@pytest.mark.parametrize(
    "phase", [before_headers, in_silence, mid_stream, not_streaming], ids=lambda p: p.__name__
)
def test_client_leaving_closes_the_upstream_request(proxy: Proxy, fake: FakeBackend, family: str, phase: Phase) -> None:  # fmt: skip
    rec, left = phase(proxy, fake, family)
    took = closed_within(rec, left)
    assert took < CLOSE_BOUND, f"upstream closed {took:.2f} s after the client left"


def test_abandoned_streams_free_their_slots(proxy: Proxy, fake: FakeBackend) -> None:
    """200 streams abandoned while the model thinks: all their upstream requests end, and the next
    real request is served at once (not queued behind dead connections)."""
    fake.enqueue(*[Turn(output=[text("never sent")], stall=30) for _ in range(200)])
    before = len(fake.responses_requests)
    socks = [open_request(proxy, "messages", stream=True) for _ in range(200)]
    for sock in socks:
        read_until(sock, b"\r\n\r\n")
    recs = [upstream_request(fake, before + i) for i in range(200)]
    left = time.monotonic()
    for sock in socks:
        sock.close()
    for rec in recs:
        closed_within(rec, left, bound=10)
    fake.enqueue(Turn(output=[text("served at once")]))
    started = time.monotonic()
    r = httpx.post(proxy.v1 + "/messages", json=BODIES["messages"][1], trust_env=False, timeout=30)
    took = time.monotonic() - started
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "served at once"
    assert took < 3, f"the next request took {took:.1f} s"
