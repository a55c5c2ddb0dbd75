"""Issue 20 rows 6 and 7 through the real proxy: a pooled upstream connection that died without a word
(laptop sleep, a VPN or Wi-Fi switch, a NAT that forgot us) and one the server closes as the next
request goes out. Between the proxy and the fake backend sits a TCP forwarder that, on its first
connection, lets one request through and then swallows everything the proxy sends (a black hole), or
closes the connection as the second request arrives."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.relay import http11
from codex_api_proxy.relay.pool import REUSED_FIRST_BYTE_TIMEOUT
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import Proxy, start_proxy


class Forwarder:
    """A loopback TCP forwarder to `target`; its first connection turns bad after one request."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.mode = "black hole"  # or "close"
        self.connections = 0
        self.port = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def reset(self, mode: str) -> None:
        """A new mode, counting from the next connection: the open ones are closed (the proxy's pool
        sees them go and forgets them)."""
        for writer in list(self._open):
            self._loop.call_soon_threadsafe(writer.close)
        time.sleep(0.3)
        self.mode, self.connections = mode, 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, self.connections = self.connections, self.connections + 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._open.add(writer)

        async def down() -> None:
            while data := await up_reader.read(1 << 16):
                writer.write(data)
                await writer.drain()

        async def up() -> None:
            parser = http11.Parser("server")
            parser.next_message()
            requests = 0
            while data := await reader.read(1 << 16):
                if number == 0 and requests >= 1:
                    if self.mode == "close":
                        return  # the server closed it as the request came in
                    continue  # swallowed: the request never reaches the server, nothing comes back
                up_writer.write(data)
                await up_writer.drain()
                if http11.END in parser.feed(data):
                    requests += 1
                    parser.next_message()

        tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        self._open.discard(writer)
        writer.close()
        up_writer.close()


@pytest.fixture(scope="module")
def forwarded(
    backend: FakeBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, Forwarder]]:
    forwarder = Forwarder(backend.port)
    upstream = f"http://127.0.0.1:{forwarder.port}/backend-api/codex"
    proxy = start_proxy(
        Path(tmp_path_factory.mktemp("dead-upstream")),
        backend,
        env={"CODEX_API_PROXY_UPSTREAM_URL": upstream},
    )
    yield proxy, forwarder
    proxy.stop()


def ask(proxy: Proxy) -> httpx.Response:
    body = {"model": "gpt-5.5", "input": "hi", "stream": True}
    return httpx.post(proxy.v1 + "/responses", json=body, timeout=60, trust_env=False)


def test_a_connection_closed_as_the_request_goes_out_is_replaced(
    forwarded: tuple[Proxy, Forwarder], fake: FakeBackend
) -> None:
    proxy, forwarder = forwarded
    forwarder.reset("close")
    fake.enqueue(Turn(output=[text("one")]), Turn(output=[text("two")]))
    assert ask(proxy).status_code == 200
    second = ask(proxy)
    assert second.status_code == 200 and "two" in second.text
    assert forwarder.connections == 2


@pytest.mark.slow
def test_a_dead_pooled_connection_costs_the_short_bound_not_the_first_byte_timeout(
    forwarded: tuple[Proxy, Forwarder], fake: FakeBackend
) -> None:
    proxy, forwarder = forwarded
    forwarder.reset("black hole")
    fake.enqueue(Turn(output=[text("one")]), Turn(output=[text("two")]))
    assert ask(proxy).status_code == 200
    started = time.monotonic()
    second = ask(proxy)
    took = time.monotonic() - started
    assert second.status_code == 200 and "two" in second.text
    assert forwarder.connections == 2
    # found dead after the reused-connection bound, not the 300 s first-byte timeout
    assert REUSED_FIRST_BYTE_TIMEOUT <= took < REUSED_FIRST_BYTE_TIMEOUT + 15
