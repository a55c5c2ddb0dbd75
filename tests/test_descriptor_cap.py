"""At a hard descriptor cap (containers, launchd: `prlimit --nofile=N:N`), a client is answered or
closed at once instead of waiting in the backlog, the log stays small, and the proxy serves again
once connections close."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend

from . import conftest
from .conftest import start_proxy

CAP = 128
CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")
def test_clients_past_the_cap_are_refused_at_once_and_logged_once(
    tmp_path: Path, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = conftest.proxy_command
    monkeypatch.setattr(
        conftest, "proxy_command", lambda *a: ["prlimit", f"--nofile={CAP}:{CAP}", *command(*a)]
    )
    p = start_proxy(tmp_path, backend, log_level="info")
    host, port = p.url.removeprefix("http://").split(":")
    idle: list[socket.socket] = []
    try:
        for _ in range(CAP + 20):  # the kernel completes each handshake; the proxy runs out first
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        log_before = p.log_path.stat().st_size
        with socket.create_connection((host, int(port)), timeout=10) as late:
            late.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n".encode())
            answer = b""
            while chunk := late.recv(65536):  # a timeout here (10 s) is the hang this test is about
                answer += chunk
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503"), answer[:300]
        assert answer == b"" or b'"overloaded_error"' in answer
        time.sleep(1.5)  # asyncio retries accepting every second: let it fail a few more times
        logged = p.log_path.stat().st_size - log_before
        assert logged < 4096, p.log()[-3000:]  # one line a minute, not one per attempt
        assert "Unhandled error in task" not in p.log()
    finally:
        for s in idle:
            s.close()
    try:
        deadline = time.monotonic() + 10
        while True:  # the proxy notices the closed connections as the loop gets to them
            try:
                r = httpx.post(p.v1 + "/chat/completions", json=CHAT, timeout=10, trust_env=False)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the proxy did not serve again"
            time.sleep(0.1)
        assert p.log().count("no file descriptor left") == 1
    finally:
        p.stop()
