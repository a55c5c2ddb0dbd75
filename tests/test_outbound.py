"""Outbound proxies as people have them, through the real proxy process and real proxy servers on
loopback: SOCKS5 from ALL_PROXY (what Clash and V2Ray export beside https_proxy) for generation and
for the token refresh, an HTTP proxy with percent-encoded credentials, an https:// proxy spoken to in
TLS, and a proxy setting that cannot be used refused at start in one line naming it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import certs

from codex_api_proxy.core.errors import ProxyError
from codex_api_proxy.core.proxies import Proxies, parse_proxy_url
from codex_api_proxy.relay.pool import Pool
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import ACCOUNT_ID, REFRESH_TOKEN, ROOT, free_port, start_proxy, write_auth

CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


class LoopbackServer:
    """An asyncio server on 127.0.0.1 in a thread of its own; `handle` is the protocol."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main() -> None:
            self.server = await asyncio.start_server(self._guarded, "127.0.0.1", 0, ssl=tls)
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()

        threading.Thread(
            target=lambda: (self.loop.run_until_complete(main()), self.loop.run_forever()), daemon=True
        ).start()
        assert started.wait(10)

    async def _guarded(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Close the server and every connection it holds, then end its thread."""

        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def splice(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, first: bytes = b""
) -> None:
    """Carry bytes both ways between the client and host:port until both sides are done."""
    up_reader, up_writer = await asyncio.open_connection(host, port)
    up_writer.write(first)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    up_writer.close()


class Socks5Server(LoopbackServer):
    """RFC 1928 CONNECT with no authentication, or RFC 1929 user/password when `credentials` is set."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.logins: list[tuple[str, str]] = []
        self.connects: list[tuple[str, int]] = []
        super().__init__()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        wanted = 2 if self.credentials else 0
        if wanted not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(bytes([5, wanted]))
        if self.credentials:
            _, size = await reader.readexactly(2)
            user = (await reader.readexactly(size)).decode()
            size = (await reader.readexactly(1))[0]
            password = (await reader.readexactly(size)).decode()
            self.logins.append((user, password))
            ok = (user, password) == self.credentials
            writer.write(b"\x01" + (b"\x00" if ok else b"\x01"))
            if not ok:
                return
        _, command, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif kind == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        port = int.from_bytes(await reader.readexactly(2), "big")
        if command != 1:
            writer.write(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")  # command not supported
            return
        self.connects.append((host, port))
        writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00")
        await splice(reader, writer, host, port)


class HttpProxy(LoopbackServer):
    """A forward proxy: CONNECT tunnels, and absolute-form requests sent on with `connection: close`.
    It records every request line with its Proxy-Authorization; with `credentials`, others get a 407."""

    def __init__(self, credentials: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.expected = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(tls)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        fields = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:] if x)]
        authorization = next((v for k, v in fields if k.lower() == "proxy-authorization"), None)
        self.seen.append((f"{method} {target}", authorization))
        if self.expected and authorization != self.expected:
            writer.write(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm="x"\r\n'
            )
            writer.write(b"content-length: 0\r\nconnection: close\r\n\r\n")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await splice(reader, writer, host.strip("[]"), int(port))
            return
        url = urlsplit(target)
        kept = [f"{k}: {v}" for k, v in fields if not k.lower().startswith(("proxy-", "connection"))]
        length = next((int(v) for k, v in fields if k.lower() == "content-length"), 0)
        body = await reader.readexactly(length)
        head = f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} {version}\r\n"
        head += "".join(f"{line}\r\n" for line in kept) + "connection: close\r\n\r\n"
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        up_writer.write(head.encode("latin-1") + body)
        answer = (await up_reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        answer = [x for x in answer if x and not x.lower().startswith("connection:")] + ["connection: close"]
        writer.write(("\r\n".join(answer) + "\r\n\r\n").encode("latin-1"))
        await pipe(up_reader, writer)
        up_writer.close()


@pytest.fixture
def fb() -> Iterator[FakeBackend]:
    """A backend of its own (these tests rotate its tokens); the login's access token has expired, so the
    first request refreshes it through the proxy under test, then generates through it."""
    with FakeBackend(access_tokens=set(), account_id=ACCOUNT_ID, refresh_tokens={REFRESH_TOKEN}) as fake:
        fake.enqueue(Turn(output=[text("through the proxy")]))
        yield fake


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def chat_through(tmp_path: Path, fb: FakeBackend, env: dict[str, str], args: list[str] | None = None) -> None:
    """One chat request through a proxy started with `env`: the refresh and the generation both happen."""
    write_auth(tmp_path / "home", access_token=fb.mint_access_token(-10))
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home", env=env, extra_args=args)
    try:
        r = httpx.post(p.v1 + "/chat/completions", json=CHAT, trust_env=False, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "through the proxy"
    finally:
        p.stop()
    (grant,) = fb.token_grants
    assert fb.responses_requests[-1].headers["authorization"] == f"Bearer {grant['access_token']}"
    saved = json.loads((tmp_path / "home/auth.json").read_text())["tokens"]
    assert saved["refresh_token"] == grant["refresh_token"]


@pytest.mark.parametrize(
    ("scheme", "userinfo", "credentials"),
    [("socks5", "", None), ("socks5h", "alice:p%40ss%3Aw0rd@", ("alice", "p@ss:w0rd"))],
)
def test_all_proxy_socks5_carries_generation_and_the_refresh(
    tmp_path: Path, fb: FakeBackend, scheme: str, userinfo: str, credentials: tuple[str, str] | None
) -> None:
    socks = Socks5Server(credentials)
    try:
        chat_through(tmp_path, fb, {"ALL_PROXY": f"{scheme}://{userinfo}127.0.0.1:{socks.port}"})
    finally:
        socks.stop()
    assert ("127.0.0.1", port_of(fb.token_url)) in socks.connects  # the refresh
    assert ("127.0.0.1", port_of(fb.url)) in socks.connects  # the generation
    if credentials:
        assert set(socks.logins) == {credentials}  # percent-decoded


def test_http_proxy_credentials_are_percent_decoded(tmp_path: Path, fb: FakeBackend) -> None:
    forward = HttpProxy(credentials="alice:p@ss")
    try:
        chat_through(tmp_path, fb, {"http_proxy": f"http://alice:p%40ss@127.0.0.1:{forward.port}"})
    finally:
        forward.stop()
    decoded = "Basic " + base64.b64encode(b"alice:p@ss").decode()
    assert (f"POST {fb.token_url}", decoded) in forward.seen
    assert (f"POST {fb.url}/responses", decoded) in forward.seen
    assert {auth for _, auth in forward.seen} == {decoded}  # never a 407 on the way


def test_https_proxy_is_spoken_to_in_tls(
    tmp_path: Path, fb: FakeBackend, tls_files: tuple[Path, ssl.SSLContext]
) -> None:
    """The proxy only speaks TLS (its certificate from a CA the proxy process trusts by SSL_CERT_FILE):
    a client talking plain HTTP to it gets nothing through."""
    ca, tls = tls_files
    forward = HttpProxy(tls=tls)
    try:
        env = {"SSL_CERT_FILE": str(ca)}
        chat_through(tmp_path, fb, env, ["--proxy", f"https://127.0.0.1:{forward.port}"])
    finally:
        forward.stop()
    assert (f"POST {fb.token_url}", None) in forward.seen
    assert (f"POST {fb.url}/responses", None) in forward.seen


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"ALL_PROXY": "socks4://bob:s3cret@127.0.0.1:7890", "https_proxy": "http://127.0.0.1:7890"},
            "ALL_PROXY",
        ),
        ({"HTTPS_PROXY": "http://127.0.0.1:notaport"}, "HTTPS_PROXY"),
        ({"http_proxy": "http://:3128"}, "http_proxy"),
    ],
)
def test_an_unusable_proxy_setting_is_refused_at_start_in_one_line(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    write_auth(tmp_path / "home")
    full_env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    full_env.update(env, CODEX_HOME=str(tmp_path / "home"), CODEX_API_PROXY_STATE_DIR=str(tmp_path / "state"))
    args = [sys.executable, "-m", "codex_api_proxy", "start", "--foreground", "--port", str(free_port())]
    r = subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith("codex-api-proxy: error: ") and named in lines[0], lines[0]
    assert "in use" not in lines[0] and "--port" not in lines[0]  # the port was never the problem
    assert "s3cret" not in r.stderr  # a proxy URL's password is never echoed


def test_proxy_urls_as_people_write_them() -> None:
    """The parsing the start-up check and both hops share, on the forms people paste."""
    proxy = parse_proxy_url("http://alice:p%40ss@proxy.corp:3128", "HTTPS_PROXY")
    assert (proxy.username, proxy.password, proxy.basic_authorization()) == (
        "alice",
        "p@ss",
        "Basic " + base64.b64encode(b"alice:p@ss").decode(),
    )
    assert "p@ss" not in repr(proxy) and "p%40ss" not in proxy.shown
    assert proxy.url() == "http://alice:p%40ss@proxy.corp:3128"  # encoded again for httpx, which decodes
    assert parse_proxy_url("127.0.0.1:7890", "x").shown == "http://127.0.0.1:7890"  # curl reads it as HTTP
    assert parse_proxy_url("socks5h://[::1]", "x").shown == "socks5h://[::1]:1080"
    proxies = Proxies.from_environ(
        None,
        {
            "ALL_PROXY": "socks5://127.0.0.1:7890",
            "https_proxy": "http://127.0.0.1:7891",
            "HTTPS_PROXY": "http://127.0.0.1:9999",  # the lower-case one wins, as for curl
            "no_proxy": "localhost,.corp.example,10.0.0.0/8,example.org:8443",
        },
    )
    assert proxies.for_url("https://chatgpt.com/backend-api").shown == "http://127.0.0.1:7891"
    assert proxies.for_url("http://chatgpt.com/").shown == "socks5://127.0.0.1:7890"  # ALL_PROXY beside it
    for direct in (
        "https://api.corp.example/",
        "http://10.2.3.4/",
        "https://localhost/",
        "https://example.org:8443/",
    ):
        assert proxies.for_url(direct) is None, direct
    assert proxies.for_url("https://example.org/") is not None  # another port
    explicit = Proxies.from_environ("socks5://127.0.0.1:1", {"NO_PROXY": "*"})
    assert explicit.for_url("https://chatgpt.com/").shown == "socks5://127.0.0.1:1"  # --proxy: for every URL


class TlsOrigin(LoopbackServer):
    """An https origin: answers every request with `200 ok` (what a real upstream is, behind CONNECT)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """(a CA file to trust, a server context with a certificate for 127.0.0.1 from that CA)."""
    ca_key, ca_cert = certs.create_ca("codex-api-proxy tests", "test CA", 2048)
    leaf = certs.dummy_cert(ca_key, ca_cert, "127.0.0.1", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key = ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "leaf.pem").write_bytes(leaf.to_pem() + key)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "leaf.pem")
    return tmp_path / "ca.pem", server


@pytest.mark.parametrize("kind", ["http", "https", "socks5"])
async def test_the_pool_reaches_an_https_origin_through_each_kind_of_proxy(
    tls_files: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """CONNECT through an HTTP proxy, TLS inside TLS through an https:// one, SOCKS5: then the origin's TLS."""
    ca, server_tls = tls_files
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    origin = TlsOrigin(server_tls)
    proxy: LoopbackServer = (
        Socks5Server(("bob", "s:cret"))
        if kind == "socks5"
        else HttpProxy(credentials="bob:s:cret", tls=server_tls if kind == "https" else None)
    )
    try:
        pool = Pool(
            connect_timeout=10,
            first_byte_timeout=10,
            idle_timeout=10,
            proxies=Proxies.from_environ(
                None, {"ALL_PROXY": f"{kind}://bob:s%3Acret@127.0.0.1:{proxy.port}"}
            ),
        )
        for _ in range(2):  # the second request reuses the tunnelled connection
            response = await pool.request("GET", f"https://127.0.0.1:{origin.port}/x", {}, None)
            assert (response.status, await response.read(100)) == (200, b"ok")
        pooled = [conn for conns in pool._idle.values() for conn in conns]
        assert pooled and all(  # a small request is not held back by Nagle on any path
            conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            for conn in pooled
        )
        pool.close()
    finally:
        origin.stop()
        proxy.stop()
    if isinstance(proxy, HttpProxy):
        assert proxy.seen == [
            (f"CONNECT 127.0.0.1:{origin.port}", "Basic " + base64.b64encode(b"bob:s:cret").decode())
        ]
    else:
        assert proxy.connects == [("127.0.0.1", origin.port)] and proxy.logins == [("bob", "s:cret")]


async def test_a_proxy_that_refuses_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    forward = HttpProxy(credentials="alice:right")
    try:
        pool = Pool(
            connect_timeout=10,
            first_byte_timeout=10,
            idle_timeout=10,
            proxies=Proxies.from_environ(
                None, {"https_proxy": f"http://alice:wrong@127.0.0.1:{forward.port}"}
            ),
        )
        with pytest.raises(ProxyError) as err:
            await pool.request("GET", "https://127.0.0.1:9/x", {}, None)
    finally:
        forward.stop()
    assert err.value.status == 502
    assert f"http://127.0.0.1:{forward.port} (from https_proxy)" in err.value.message
    assert "407" in err.value.message and "wrong" not in err.value.message
