"""A large request body is parsed, counted and translated off the event loop: other clients are
answered while it is, and the memory it took is returned (RSS figures: scripts, not tests)."""

from __future__ import annotations

import json
import random
import socket
import string
import threading
import time

import httpx

from codex_api_proxy.testing.fake_backend import FakeBackend

from .conftest import Proxy


def _words(size: int) -> str:
    """Text the tokenizer has to work through (not one repeated character)."""
    rnd = random.Random(7)
    vocabulary = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(2, 9))) for _ in range(5000)]
    out = " ".join(rnd.choices(vocabulary, k=size // 5))
    return out[:size]


def test_small_request_is_answered_while_a_big_body_is_worked_on(proxy: Proxy, fake: FakeBackend) -> None:
    # Claude Code's count_tokens fallback (max_tokens: 1) with 40 MiB of text: answered by the proxy
    # itself, after parsing and counting the whole body. A chat request sent once the big body is
    # uploaded must not wait for that work: it is answered first.
    big = json.dumps(
        {"model": "gpt-5.5", "max_tokens": 1, "messages": [{"role": "user", "content": _words(40 << 20)}]}
    ).encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: {proxy.url.removeprefix('http://')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(big)}\r\n\r\n"
    ).encode()
    order: list[str] = []
    host, port = proxy.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + big)
        del big

        def read_big() -> None:
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            order.append("big")

        reader = threading.Thread(target=read_big)
        reader.start()
        time.sleep(0.05)  # the last bytes of the upload reach the proxy
        r = httpx.post(
            proxy.v1 + "/chat/completions",
            json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
            trust_env=False,
        )
        assert r.status_code == 200, r.text
        order.append("small")
        reader.join(60)
    assert order == ["small", "big"]
