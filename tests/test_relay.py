"""The relay's listener on its own: idle connections closed, a trickled request cut, bad heads refused.

Issue 20 row 8: a connection that sends nothing, or a head one byte at a time, must not hold a socket
for long. The relay takes its two bounds as arguments, so these tests use short ones.
"""

from __future__ import annotations

import asyncio
import json
import time

from codex_api_proxy.core.errors import ProxyError
from codex_api_proxy.relay import http11
from codex_api_proxy.relay.exchange import FlowState
from codex_api_proxy.relay.server import FLOW_HEADER, Canned, RelayServer
from codex_api_proxy.translate.base import RequestContext


async def started(idle: float = 30.0, head: float = 30.0) -> RelayServer:
    relay = RelayServer(backend=None, heartbeat=0, idle_timeout=idle, head_timeout=head)  # type: ignore[arg-type]
    await relay.start()
    return relay


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the relay sent until it closed the connection (fails if it did not in time)."""
    return await asyncio.wait_for(reader.read(), seconds)


def request(flow_id: str) -> bytes:
    return http11.request_head(
        "POST", "/v1/responses", {"host": "x", FLOW_HEADER: flow_id, "content-length": "0"}
    )


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        relay = await started(idle=0.3, head=30)
        try:
            relay.expect("flow-1", Canned(200, {"content-type": "application/json"}, b"{}"))
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(request("flow-1"))
            parser = http11.Parser("client")
            parser.next_message("POST")
            events = parser.feed(await reader.read(1 << 16))
            assert isinstance(events[0], http11.Response) and events[0].status == 200
            since = time.monotonic()
            assert await closed_within(reader, 10) == b""  # kept alive, then closed for idleness
            assert time.monotonic() - since >= 0.25
            writer.close()
        finally:
            await relay.stop()

    asyncio.run(main())


def test_a_connection_that_sends_nothing_or_trickles_its_head_is_cut() -> None:
    async def main() -> None:
        relay = await started(idle=30, head=0.5)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            assert await closed_within(reader, 10) == b""  # never a byte: the head deadline
            writer.close()

            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            since = time.monotonic()

            async def trickle() -> None:
                for byte in request("flow-2"):
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)  # bytes keep coming: idleness alone would never cut it

            task = asyncio.create_task(trickle())
            assert await closed_within(reader, 10) == b""
            assert time.monotonic() - since < 5  # the whole head would take ~5 s at this pace
            task.cancel()
            writer.close()
        finally:
            await relay.stop()

    asyncio.run(main())


def test_bad_and_unknown_requests_are_refused_in_json() -> None:
    async def main() -> None:
        relay = await started()
        try:
            for wire, status in (
                (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 400),
                (request("no-such-flow"), 403),
                (b"GET / HTTP/1.1\r\nx: " + b"a" * (http11.MAX_HEAD + 10), 431),
            ):
                reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
                writer.write(wire)
                answer = await closed_within(reader, 10)
                parser = http11.Parser("client")
                parser.next_message("GET")
                head, body, _ = parser.feed(answer)
                assert head.status == status, answer
                assert json.loads(body)["error"]["code"] == "relay_refused"
                writer.close()
        finally:
            await relay.stop()

    asyncio.run(main())


class RecordingBackend:
    """Stands where the upstream call goes: records what the relay would send, answers 502."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send(self, route: str, method: str, path: str, body: bytes | None, headers: dict) -> None:
        self.sent.append((path, body))
        raise ProxyError(502, "recorded", code="recorded")


def test_the_upstream_body_is_the_registered_one_not_the_hops() -> None:
    """mitmproxy sends an empty body over the loopback hop: the relay holds the translated one."""
    from codex_api_proxy.proxy.gateway import FAMILIES

    async def main() -> None:
        backend = RecordingBackend()
        relay = RelayServer(backend=backend, heartbeat=0)  # type: ignore[arg-type]
        await relay.start()
        try:
            translated = b'{"model":"gpt-5.5","input":[],"stream":true}'
            state = FlowState(FAMILIES["responses"], RequestContext(stream=True), False, body=translated)
            relay.expect("flow-3", state)
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            writer.write(request("flow-3"))  # content-length: 0
            parser = http11.Parser("client")
            parser.next_message("POST")
            events: list = []
            while http11.END not in events:
                events += parser.feed(await reader.read(1 << 16))
            assert events[0].status == 502
            assert backend.sent == [("responses", translated)]
            writer.close()
        finally:
            await relay.stop()

    asyncio.run(main())
