"""The boundary through the real proxy: the key, browsers, DNS rebinding, and limits before buffering.

The proxy holds a subscription: only the person's own clients may use it. Each test here is what an
attacker (or a careless web page) would try; `test_mitmdump.py` runs the ones that need no special
start again under `mitmdump -s`.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import zlib
from pathlib import Path

import httpx

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import Proxy, start_proxy

CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


def port_of(proxy: Proxy) -> int:
    return int(proxy.url.rsplit(":", 1)[1])


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def test_key_from_the_environment_holds_with_every_option_at_its_default(
    tmp_path: Path, backend: FakeBackend
) -> None:
    """The README's recipe: the key only in the environment, a public bind, nothing else given."""
    p = start_proxy(
        tmp_path, backend, env={"CODEX_API_PROXY_API_KEY": "s3cret"}, extra_args=["--host", "0.0.0.0"]
    )
    try:
        for path in ("/v1/models", "/ready", "/metrics", "/metrics/prometheus"):
            r = httpx.get(p.url + path, trust_env=False, timeout=30)
            assert r.status_code == 401, (path, r.status_code)
        r = httpx.post(p.v1 + "/chat/completions", json=CHAT, trust_env=False, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        backend.enqueue(Turn(output=[text("with the key")]))
        r = httpx.post(p.v1 + "/chat/completions", json=CHAT, headers={"authorization": "Bearer s3cret"},
                       trust_env=False, timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "with the key"
        assert httpx.get(p.url + "/health", trust_env=False).status_code == 200  # liveness stays open
    finally:
        p.stop()


def test_key_file_alone_is_enforced(tmp_path: Path, backend: FakeBackend) -> None:
    key = tmp_path / "key"
    key.write_text("from-a-file\n")
    key.chmod(0o600)
    p = start_proxy(tmp_path, backend, extra_args=["--api-key-file", str(key)])
    try:
        assert httpx.get(p.v1 + "/models", trust_env=False).status_code == 401
        r = httpx.get(p.v1 + "/models", headers={"x-api-key": "from-a-file"}, trust_env=False, timeout=30)
        assert r.status_code == 200
    finally:
        p.stop()


def test_a_cross_site_form_post_is_refused_before_the_upstream(proxy: Proxy, fake: FakeBackend) -> None:
    """What a page can send without a CORS preflight: a text/plain or form POST."""
    body = json.dumps(CHAT)
    for headers, status in (
        ({"content-type": "text/plain", "origin": "https://evil.example"}, 403),
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
    ):
        r = httpx.post(proxy.v1 + "/chat/completions", content=body, headers=headers, trust_env=False)
        assert r.status_code == status, (headers, r.text)
        assert r.json()["error"]["message"]
    r = httpx.post(
        proxy.v1 + "/messages", content=body, headers={"content-type": "text/plain"}, trust_env=False
    )
    assert r.status_code == 415 and r.json()["type"] == "error"  # Anthropic's envelope on its route
    assert "application/json" in r.json()["error"]["message"]
    assert fake.responses_requests == []


def test_origin_is_refused_without_and_with_a_key(proxy: Proxy, fake: FakeBackend) -> None:
    for path in ("/v1/models", "/ready", "/metrics", "/health"):
        r = httpx.get(proxy.url + path, headers={"origin": "https://evil.example"}, trust_env=False)
        assert r.status_code == 403, path
        assert "access-control-allow-origin" not in r.headers
    r = httpx.post(proxy.v1 + "/messages", json={"model": "gpt-5.5", "max_tokens": 5, "messages": []},
                   headers={"origin": "null"}, trust_env=False)  # fmt: skip
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert fake.responses_requests == []


def test_origin_is_refused_with_a_valid_key_and_allowed_when_configured(
    tmp_path: Path, backend: FakeBackend
) -> None:
    p = start_proxy(tmp_path, backend, env={"CODEX_API_PROXY_API_KEY": "k",
                                            "CODEX_API_PROXY_ALLOW_ORIGIN": "http://localhost:3000"})  # fmt: skip
    key = {"authorization": "Bearer k"}
    try:
        r = httpx.get(p.v1 + "/models", headers={**key, "origin": "https://evil.example"}, trust_env=False)
        assert r.status_code == 403
        pre = httpx.options(p.v1 + "/chat/completions", trust_env=False, headers={
            "origin": "http://localhost:3000", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type"})  # fmt: skip
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "authorization" in pre.headers["access-control-allow-headers"]
        backend.enqueue(Turn(output=[text("from the page")]))
        r = httpx.post(p.v1 + "/chat/completions", json=CHAT, headers={**key, "origin": "http://localhost:3000"},
                       trust_env=False, timeout=30)  # fmt: skip
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        plain = httpx.post(p.v1 + "/chat/completions", json=CHAT, headers=key, trust_env=False, timeout=30)
        assert "access-control-allow-origin" not in plain.headers  # no CORS for clients that are not pages
    finally:
        p.stop()


def test_dns_rebinding_host_is_refused(proxy: Proxy, fake: FakeBackend) -> None:
    port = port_of(proxy)
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        r = httpx.get(proxy.url + "/v1/models", headers={"host": host}, trust_env=False)
        assert r.status_code == 403, host
        assert r.json()["error"]["code"] == "host_not_allowed"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert httpx.get(proxy.url + "/health", headers={"host": host}, trust_env=False).status_code == 200, (
            host
        )


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def send_huge(port: int, total: int, chunked: bool = False, path: str = "/v1/chat/completions") -> bytes:
    """Send a body of `total` bytes (declared, or chunked) until the proxy answers; its answer's head.
    Like curl, it reads while it sends, so an early answer is seen even when the server stops reading."""
    framing = "transfer-encoding: chunked" if chunked else f"content-length: {total}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                 f"content-type: application/json\r\n{framing}\r\n\r\n".encode())  # fmt: skip
    piece = b"x" * (1 << 20)
    chunk = b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece
    pending, sent = memoryview(chunk), 0
    sock.setblocking(False)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 1)
            if readable:
                break
            if writable:
                try:
                    n = sock.send(pending)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    continue
                pending = pending[n:]
                if not pending:
                    sent += len(piece)
                    pending = memoryview(chunk)
        sock.setblocking(True)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        return answer
    finally:
        sock.close()


def test_a_huge_body_is_refused_at_its_head(proxy: Proxy, fake: FakeBackend) -> None:
    before = rss_kb(proxy.process.pid)
    for declared in (1 << 30, 70 << 20):  # over mitmproxy's own cut, and over ours only
        answer = send_huge(port_of(proxy), declared)
        assert answer.startswith(b"HTTP/1.1 413") and b"application/json" in answer, answer[:300]
    answer = send_huge(port_of(proxy), 1 << 30, chunked=True)  # no declared size: cut off at the limit
    assert answer.startswith(b"HTTP/1.1 413") and b"application/json" in answer, answer[:300]
    assert rss_kb(proxy.process.pid) - before < 150_000  # the chunked one may be read up to the limit
    assert fake.responses_requests == []


def test_a_huge_body_without_a_key_is_never_buffered(tmp_path: Path, backend: FakeBackend) -> None:
    p = start_proxy(tmp_path, backend, env={"CODEX_API_PROXY_API_KEY": "k"}, log_level="info")
    try:
        before = rss_kb(p.process.pid)
        for chunked in (False, True):
            answer = send_huge(port_of(p), 1 << 30, chunked=chunked, path="/v1/messages")
            assert answer.split(b" ", 2)[1] in (b"401", b"413"), answer[:300]  # refused on its head
            assert b'"type": "error"' in answer or b'"type":"error"' in answer  # Anthropic's envelope
        assert rss_kb(p.process.pid) - before < 50_000
        assert httpx.get(p.url + "/health", trust_env=False).status_code == 200
        assert backend.responses_requests == []
    finally:
        p.stop()


def test_gzip_bomb_is_refused_by_its_decoded_size(proxy: Proxy, fake: FakeBackend) -> None:
    payload = (
        b'{"model": "gpt-5.5", "messages": [{"role": "user", "content": "' + b"0" * (200 << 20) + b'"}]}'
    )
    bomb = zlib.compress(payload, 9)
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gzipped = gz.compress(payload) + gz.flush()
    assert len(gzipped) < 1 << 20 and len(bomb) < 1 << 20
    for encoding, data in (("gzip", gzipped), ("deflate", bomb)):
        r = httpx.post(proxy.v1 + "/chat/completions", content=data, trust_env=False, timeout=60,
                       headers={"content-type": "application/json", "content-encoding": encoding})  # fmt: skip
        assert r.status_code == 413, (encoding, r.text[:200])
        assert "decoded" in r.json()["error"]["message"]
    fake.enqueue(Turn(output=[text("small and compressed")]))
    small = json.dumps(CHAT).encode()
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    r = httpx.post(proxy.v1 + "/chat/completions", content=gz.compress(small) + gz.flush(), trust_env=False,
                   headers={"content-type": "application/json", "content-encoding": "gzip"}, timeout=30)  # fmt: skip
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "small and compressed"
    assert len(fake.responses_requests) == 1


def test_header_flood_is_refused_and_other_clients_keep_their_latency(proxy: Proxy) -> None:
    latencies: list[float] = []
    done = threading.Event()

    def other_client() -> None:
        with httpx.Client(trust_env=False, timeout=60) as c:
            while not done.is_set():
                started = time.monotonic()
                assert c.get(proxy.url + "/health").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    watcher = threading.Thread(target=other_client)
    watcher.start()
    try:
        time.sleep(0.2)
        port = port_of(proxy)
        for n in (10_000, 300):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                flood = "".join(f"x-h{i}: v\r\n" for i in range(n))
                sock.sendall(f"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n{flood}\r\n".encode())
                assert sock.recv(65536).startswith(b"HTTP/1.1 431")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:  # a head that never ends
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-endless: ")
            answer = b""
            for _ in range(100):
                try:
                    sock.sendall(b"a" * 4096)
                except (BrokenPipeError, ConnectionResetError):
                    break
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:  # one huge header
            sock.sendall(
                f"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: {'a' * (70 << 10)}\r\n\r\n".encode()
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 431")
        time.sleep(0.2)
    finally:
        done.set()
        watcher.join()
    assert latencies and max(latencies) < 2.0, f"another client waited {max(latencies):.2f} s"


def test_descriptor_limit_is_raised_to_the_hard_limit(proxy: Proxy) -> None:
    """1,100 idle connections must not lock every client out at the default soft limit of 1,024."""
    limits = Path(f"/proc/{proxy.process.pid}/limits").read_text()
    (line,) = [x for x in limits.splitlines() if x.startswith("Max open files")]
    soft, hard = line.split()[3:5]
    assert soft == hard, line


def test_a_malformed_chunked_body_gets_a_400_not_a_closed_connection(proxy: Proxy, fake: FakeBackend) -> None:
    host = proxy.url.removeprefix("http://")
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()
    for body in (b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"):  # a chunk size, a chunk's end
        with socket.create_connection(("127.0.0.1", port_of(proxy)), timeout=10) as sock:
            sock.sendall(head + body)
            answer = b""
            while chunk := sock.recv(65536):  # one answer, then the close
                answer += chunk
        status, _, rest = answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 400 Bad Request", answer[:300]
        error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
        assert error["type"] == "invalid_request_error" and "chunk" in error["message"]
    fake.enqueue(Turn(output=[text("well-formed chunks")]))
    r = httpx.post(proxy.v1 + "/chat/completions", content=iter([json.dumps(CHAT).encode()]),
                   headers={"content-type": "application/json"}, trust_env=False, timeout=30)  # fmt: skip
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "well-formed chunks"
    assert len(fake.responses_requests) == 1
