"""The upstream pool against fault servers on loopback: real sockets, the pool's own event loop.

Each server here misbehaves in one way a real network or server does: it closes a kept-alive
connection just as the next request goes out, goes silent on a reused connection (a peer that vanished
while the connection sat in the pool), switches protocols, floods interim answers, or cuts a chunk.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from codex_api_proxy.core.errors import ProxyError
from codex_api_proxy.core.limits import BODY_SLICE
from codex_api_proxy.core.proxies import Proxies
from codex_api_proxy.relay import http11
from codex_api_proxy.relay.pool import Pool

OK = http11.response(200, {"content-type": "application/json"}, b"{}")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader, parser: http11.Parser) -> bool:
    """One whole request from the client; False when it closed first."""
    events = parser.next_message()
    while http11.END not in events:
        data = await reader.read(1 << 16)
        if not data:
            return False
        events = parser.feed(data)
    return True


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A server whose connections are numbered 0, 1, ... in the order they were accepted."""
    accepted: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        try:
            await handler(reader, writer, accepted[-1])
        except (ConnectionError, http11.ProtocolError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/backend-api/codex/responses", accepted


def make_pool(**overrides: float) -> Pool:
    settings: dict = {
        "connect_timeout": 5,
        "first_byte_timeout": 30,
        "idle_timeout": 30,
        "proxies": Proxies(),
    }
    return Pool(**{**settings, **overrides})


async def post(pool: Pool, url: str) -> bytes:
    response = await pool.request("POST", url, {"content-type": "application/json"}, b"{}")
    assert response.status == 200
    return await response.read(1 << 20)


@pytest.mark.parametrize("when", ["as the next request arrives", "right after the answer"])
def test_a_kept_alive_connection_the_server_closes_is_replaced(when: str) -> None:
    """Issue 20 row 6: the keep-alive race gives the client its answer, not a 502."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        parser = http11.Parser("server")
        if not await read_request(reader, parser):
            return
        writer.write(OK)
        await writer.drain()
        if n == 0 and when == "as the next request arrives":
            await reader.read(1)  # the next request's first byte: close without a word
            return
        elif n == 0:
            return  # FIN right after the answer, while the pool still holds the connection
        while await read_request(reader, parser):
            writer.write(OK)

    async def main() -> None:
        server, url, accepted = await serve(handler)
        pool = make_pool()
        try:
            for _ in range(3):
                assert await post(pool, url) == b"{}"
            assert len(accepted) == 2  # the closed connection was replaced once, not per request
        finally:
            pool.close()
            server.close()

    asyncio.run(main())


def test_a_silent_reused_connection_is_detected_well_before_the_first_byte_timeout() -> None:
    """Issue 20 row 7: a peer that vanished while its connection sat in the pool answers nothing, ever;
    the request goes again on a fresh connection after the short bound, not after 30 s."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        parser = http11.Parser("server")
        while await read_request(reader, parser):
            writer.write(OK)
            if n < 2:
                await asyncio.sleep(3600)  # one answer, then a black hole

    async def main() -> None:
        server, url, accepted = await serve(handler)
        pool = make_pool(first_byte_timeout=30, reused_first_byte_timeout=0.3)
        try:
            await asyncio.gather(post(pool, url), post(pool, url))  # two pooled connections, both to die
            started = time.monotonic()
            assert await post(pool, url) == b"{}"
            assert time.monotonic() - started < 10  # the first-byte timeout is 30 s
            assert len(accepted) == 3  # the retry went to a fresh connection, not the other dead one
        finally:
            pool.close()
            server.close()

    asyncio.run(main())


def test_a_fresh_connection_gets_the_whole_first_byte_timeout_and_no_second_try() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader, http11.Parser("server"))
        await asyncio.sleep(3600)

    async def main() -> None:
        server, url, accepted = await serve(handler)
        pool = make_pool(first_byte_timeout=0.5, reused_first_byte_timeout=0.1)
        try:
            with pytest.raises(ProxyError) as raised:
                await post(pool, url)
            assert raised.value.status == 504 and len(accepted) == 1
        finally:
            pool.close()
            server.close()

    asyncio.run(main())


async def answer_with(wire: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader, http11.Parser("server"))
        writer.write(wire)
        await writer.drain()
        await asyncio.sleep(3600)  # and hold the connection open

    return handler


def test_a_101_answer_fails_at_once() -> None:
    """Issue 20 row 14: not after the idle timeout."""

    async def main() -> None:
        server, url, _ = await serve(
            await answer_with(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n")
        )
        pool = make_pool(first_byte_timeout=30, idle_timeout=30)
        try:
            started = time.monotonic()
            with pytest.raises(ProxyError) as raised:
                await post(pool, url)
            assert raised.value.status == 502 and "101" in raised.value.message
            assert time.monotonic() - started < 10
        finally:
            pool.close()
            server.close()

    asyncio.run(main())


def test_twenty_thousand_interim_answers_then_the_answer() -> None:
    async def main() -> None:
        server, url, _ = await serve(await answer_with(b"HTTP/1.1 100 Continue\r\n\r\n" * 20_000 + OK))
        pool = make_pool()
        try:
            assert await post(pool, url) == b"{}"
        finally:
            pool.close()
            server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n40\r\ndata: {"type":"resp', "upstream_cut"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "bad_upstream"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad_upstream"),
    ],
)
def test_a_broken_body_is_a_502_that_says_so(wire: bytes, code: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader, http11.Parser("server"))
        writer.write(wire)
        await writer.drain()  # then close: a cut mid-chunk

    async def main() -> None:
        server, url, _ = await serve(handler)
        pool = make_pool()
        try:
            with pytest.raises(ProxyError) as raised:
                await post(pool, url)
            assert raised.value.status == 502 and raised.value.code == code
        finally:
            pool.close()
            server.close()

    asyncio.run(main())


def test_upstream_sockets_probe_keep_alive_and_errors_name_no_class() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            parser = http11.Parser("server")
            while await read_request(reader, parser):
                writer.write(OK)

        server, url, _ = await serve(handler)
        pool = make_pool()
        try:
            await post(pool, url)
            (conn,) = pool._live
            sock = conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) <= 30
        finally:
            pool.close()
            server.close()
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        with pytest.raises(ProxyError) as raised:
            await post(make_pool(), f"http://127.0.0.1:{closed_port}/x")
        assert raised.value.status == 502
        assert "Error" not in raised.value.message and "_" not in raised.value.message.split(":", 1)[1]

    asyncio.run(main())


def test_a_large_body_goes_whole_in_slices_and_the_connection_is_reused() -> None:
    """A body of several slices (written as the socket takes them, not in one write) arrives byte for
    byte, also to a server that reads slowly; the connection serves the next request."""
    body = bytes(range(256)) * (4 * (BODY_SLICE // 256) + 3)
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        parser = http11.Parser("server")
        while True:
            events, data = parser.next_message(), bytearray()
            while http11.END not in events:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    return
                await asyncio.sleep(0)  # a slow reader: the pool's writes wait for the socket
                events = parser.feed(chunk)
                data += b"".join(e for e in events if type(e) is bytes)
            received.append(bytes(data))
            writer.write(OK)

    async def main() -> None:
        server, url, accepted = await serve(handler)
        pool = make_pool()
        try:
            for sent in (body, b"{}"):
                response = await pool.request("POST", url, {"content-type": "application/json"}, sent)
                assert response.status == 200 and await response.read(1 << 20) == b"{}"
            assert received == [body, b"{}"] and len(accepted) == 1
        finally:
            pool.close()
            server.close()

    asyncio.run(main())
