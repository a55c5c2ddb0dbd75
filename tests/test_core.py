"""The proxy process itself: local endpoints, routing, local auth, fail-closed errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import Proxy, start_proxy, write_auth


def test_health_is_local_and_never_reads_auth(proxy: Proxy, fake: FakeBackend, http: httpx.Client) -> None:
    auth = proxy.codex_home / "auth.json"
    saved = auth.read_bytes()
    auth.unlink()
    try:
        started = time.perf_counter()
        r = http.get("/health")
        elapsed = time.perf_counter() - started
        assert r.status_code == 200
        body = r.json()
        assert body["ok"] is True and body["version"] and body["uptime_seconds"] >= 0
        assert elapsed < 0.5  # loopback round trip; the proxy work itself is microseconds
        assert fake.requests == []
        # readiness does read it: missing file -> 503 naming the path, not a traceback
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert str(auth) in ready.json()["error"]
        # and an API call gets a clear JSON error in its own envelope
        chat = http.post(
            "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 401  # no login is the person's to fix: `codex login`, not a retry
        message = chat.json()["error"]["message"]
        assert str(auth) in message and "codex login" in message
    finally:
        auth.write_bytes(saved)
    assert http.get("/ready").json()["mode"] == "chatgpt"


def test_ready_reports_mode_without_secrets(http: httpx.Client, proxy: Proxy) -> None:
    r = http.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["mode"] == "chatgpt"
    text_ = r.text
    auth = (proxy.codex_home / "auth.json").read_text()
    for secret in ("access-token-1", "refresh-token-1"):
        assert secret in auth and secret not in text_


@pytest.mark.parametrize("path", ["/v1/nope", "/nope", "/v1/chat/completion"])
def test_unknown_paths_get_json_404(http: httpx.Client, path: str) -> None:
    r = http.post(path, json={})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["type"] == "not_found_error"


def test_wrong_method_is_405(http: httpx.Client) -> None:
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405
    assert "GET" in r.json()["error"]["message"]


def test_claude_code_probes_answered_locally(http: httpx.Client, fake: FakeBackend) -> None:
    assert http.head("/").status_code == 200
    assert http.post("/api/event_logging/batch?beta=true", json={"events": []}).status_code == 200
    assert fake.requests == []


def test_malformed_json_gets_client_envelope_and_proxy_keeps_serving(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"
    r = http.post("/v1/messages", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert http.get("/health").status_code == 200


def test_query_string_and_unversioned_paths_route(http: httpx.Client, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("routed")]))
    r = http.post("/responses?beta=true", json={"model": "gpt-5.5", "input": "hi"})
    assert r.status_code == 200, r.text
    assert r.json()["output_text"] == "routed"


def test_metrics_count_requests_without_secrets(http: httpx.Client, proxy: Proxy) -> None:
    http.get("/health")
    r = http.get("/metrics/prometheus")
    assert r.status_code == 200
    assert "codex_api_proxy_uptime_seconds" in r.text
    assert (
        'codex_api_proxy_requests_total{family="local",model="",route="/health",status_class="2xx"}' in r.text
    )
    assert "access-token-1" not in r.text
    assert http.get("/metrics").json()["requests_total"] >= 1


@pytest.fixture(scope="module")
def keyed_proxy(backend: FakeBackend, tmp_path_factory: pytest.TempPathFactory):
    p = start_proxy(
        tmp_path_factory.mktemp("keyed"), backend, env={"CODEX_API_PROXY_API_KEY": "local-secret-key"}
    )
    yield p
    p.stop()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"x-api-key": "wrong"}, 401),
        ({"authorization": "Bearer local-secret-key"}, 200),
        ({"authorization": "bearer local-secret-key"}, 200),
        ({"x-api-key": "local-secret-key"}, 200),
    ],
)
def test_local_api_key(keyed_proxy: Proxy, fake: FakeBackend, headers: dict[str, str], status: int) -> None:
    fake.enqueue(Turn(output=[text("ok")]))
    r = httpx.post(keyed_proxy.v1 + "/responses", json={"model": "gpt-5.5", "input": "hi"}, headers=headers,
                   trust_env=False, timeout=30)  # fmt: skip
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json()["error"]["type"] == "authentication_error"
        assert fake.responses_requests == []
        m = httpx.post(keyed_proxy.v1 + "/messages", json={}, headers=headers, trust_env=False)
        assert m.status_code == 401 and m.json()["type"] == "error"
    assert httpx.get(keyed_proxy.url + "/health", trust_env=False).status_code == 200


def test_public_bind_without_key_is_refused(tmp_path: Path, backend: FakeBackend) -> None:
    import subprocess
    import sys

    write_auth(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "codex_api_proxy", "start", "--foreground", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "CODEX_HOME": str(tmp_path)},
    )  # fmt: skip
    assert r.returncode == 2
    assert "API key" in r.stderr


def test_sigterm_exits_zero(tmp_path: Path, backend: FakeBackend) -> None:
    p = start_proxy(tmp_path, backend)
    assert p.stop() == 0


def test_unreachable_upstream_is_json_502(tmp_path: Path, backend: FakeBackend) -> None:
    from .conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/backend-api/codex"
    p = start_proxy(tmp_path, backend, env={"CODEX_API_PROXY_UPSTREAM_URL": dead})
    try:
        r = httpx.post(p.v1 + "/chat/completions", json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]},
                       trust_env=False, timeout=30)  # fmt: skip
        assert r.status_code == 502
        assert r.headers["content-type"].startswith("application/json")
        assert "unreachable" in r.json()["error"]["message"]
        m = httpx.post(p.v1 + "/messages", json={"model": "gpt-5.5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
                       trust_env=False, timeout=30)  # fmt: skip
        assert m.status_code == 502 and m.json()["error"]["type"] == "api_error"
    finally:
        p.stop()


def test_upstream_timeout_is_504(tmp_path: Path, backend: FakeBackend) -> None:
    backend.clear()
    p = start_proxy(tmp_path, backend, extra_args=["--first-byte-timeout", "0.5"])
    try:
        backend.enqueue(Turn(delay_headers=3))
        r = httpx.post(
            p.v1 + "/responses", json={"model": "gpt-5.5", "input": "hi"}, trust_env=False, timeout=30
        )
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "upstream_timeout"
    finally:
        p.stop()


class ForwardProxy:
    """A minimal outbound HTTP proxy on loopback that records what went through it."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self.seen: list[str] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main() -> None:
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()

        threading.Thread(
            target=lambda: (self.loop.run_until_complete(main()), self.loop.run_forever()), daemon=True
        ).start()
        started.wait(5)

    async def handle(self, reader, writer) -> None:  # type: ignore[no-untyped-def]
        import asyncio
        from urllib.parse import urlsplit

        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, url, version = lines[0].split(" ")
        self.seen.append(f"{method} {url}")
        length = next(
            (int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"), 0
        )
        body = await reader.readexactly(length) if length else b""
        target = urlsplit(url)
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        kept = [x for x in lines[1:] if x and not x.lower().startswith(("connection", "proxy-"))]
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = "".join(f"{line}\r\n" for line in kept)
        up_writer.write(
            f"{method} {path} {version}\r\n{headers}Connection: close\r\n\r\n".encode("latin-1") + body
        )
        while data := await up_reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        up_writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_outbound_proxy_is_used_for_upstream_calls(tmp_path: Path, backend: FakeBackend) -> None:
    forward = ForwardProxy()
    backend.clear()
    p = start_proxy(tmp_path, backend, extra_args=["--proxy", f"http://127.0.0.1:{forward.port}"])
    try:
        backend.enqueue(Turn(output=[text("through the corporate proxy")]))
        r = httpx.post(
            p.v1 + "/responses", json={"model": "gpt-5.5", "input": "hi"}, trust_env=False, timeout=30
        )
        assert r.status_code == 200, r.text
        assert r.json()["output_text"] == "through the corporate proxy"
        assert forward.seen == [f"POST {backend.url}/responses"]
    finally:
        p.stop()
        forward.stop()


@pytest.mark.slow
def test_memory_stays_flat_over_thousands_of_requests(tmp_path: Path, backend: FakeBackend) -> None:
    p = start_proxy(tmp_path, backend, log_level="warning")

    def rss_kb() -> int:
        status = Path(f"/proc/{p.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))

    chat = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
    messages = {
        "model": "gpt-5.5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    try:
        with httpx.Client(base_url=p.v1, trust_env=False, timeout=30) as client:

            def burst(n: int) -> None:
                backend.clear()  # the fake records requests; keep the test process small too
                for i in range(n):
                    r = (
                        client.post("/chat/completions", json=chat)
                        if i % 2
                        else client.post("/messages", json=messages)
                    )
                    assert r.status_code == 200

            burst(300)
            before = rss_kb()
            burst(1500)
            after = rss_kb()
    finally:
        p.stop()
    assert after - before < 10_000, f"RSS grew from {before} kB to {after} kB"


def test_oversized_body_is_a_json_413(http: httpx.Client, fake: FakeBackend) -> None:
    big = b'{"model": "gpt-5.5", "input": "' + b"x" * (65 << 20) + b'"}'
    r = http.post("/v1/messages", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"
    assert fake.responses_requests == []


def test_unparsable_request_gets_json_not_html(proxy: Proxy) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"application/json" in head
    parsed = json.loads(body)
    assert parsed["type"] == "error" and parsed["error"]["type"] == "invalid_request_error"
    assert parsed["error"]["message"].startswith("codex-api-proxy:")


def test_upstream_connections_are_pooled_across_clients(proxy: Proxy, fake: FakeBackend) -> None:
    before = fake.connections_opened
    messages = {
        "model": "gpt-5.5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    for i in range(12):  # a new client connection each time, as many clients open one per request
        path, body = (
            ("/v1/messages", messages) if i % 2 else ("/v1/responses", {"model": "gpt-5.5", "input": "hi"})
        )
        assert httpx.post(proxy.url + path, json=body, trust_env=False, timeout=30).status_code == 200
    assert fake.connections_opened - before <= 2  # mitmproxy alone would open one per client connection
