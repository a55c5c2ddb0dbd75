"""The relay: mitmproxy's upstream for every generation call, a loopback server in the same event loop.

mitmproxy owns the client's socket but cannot do what a generation call needs (its upstream side has
no timeout, writes HTML error pages, cannot write while the upstream is silent, and pools nothing
across client connections). So the addon retargets each translated flow here, and an `Exchange` serves it:
credentials, the upstream call, translation of the answer, heartbeats, in-band errors.

This side is an `asyncio.Protocol`, not a stream reader: the transport is always reading, so when
mitmproxy closes the connection because its client went away, `connection_lost` fires at once and
the exchange drops its upstream request, whatever phase it is in (waiting for the head, in silence,
mid-stream, or folding a non-streaming answer).

Only a flow the addon registered is served, once: its id (a random uuid4, in a header) is checked on
the head before any body is read, so another local process can neither borrow the login through the
relay nor make it buffer; heads and bodies are bounded and idle connections closed. No secret is
needed on the flow, so mitmweb shows nothing worth stealing (a replay finds its id used up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from ..core.errors import ProxyError
from ..core.limits import MAX_HEAD, MITMPROXY_BODY, RELAY_HEAD_TIMEOUT, RELAY_IDLE_TIMEOUT
from .backend import Backend
from .exchange import Exchange, FlowState, RelayRequest, http_head

log = logging.getLogger(__name__)

FLOW_HEADER = "x-cxp-flow"  # the flow's id: the state the addon registered for it, served once


@dataclass(frozen=True)
class Canned:
    """An answer decided before the upstream was asked (a request the boundary refused)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def serialise(self) -> bytes:
        return http_head(self.status, {k.lower(): v for k, v in self.headers.items()}, self.body)


class RelayServer:
    """The loopback HTTP/1.1 endpoint mitmproxy forwards translated flows to."""

    def __init__(self, backend: Backend, heartbeat: float) -> None:
        self.backend = backend
        self.heartbeat = heartbeat
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pending: dict[str, FlowState | Canned] = {}
        self._exchanges: dict[str, Exchange] = {}
        self._connections: set[_RelayConnection] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _RelayConnection(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for exchange in list(self._exchanges.values()):
            exchange.abort()
        for conn in list(self._connections):
            conn.close()
        if self._server:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    def expect(self, flow_id: str, state: FlowState | Canned) -> None:
        """The addon has translated a flow and is about to send it here."""
        self._pending[flow_id] = state

    def forget(self, flow_id: str) -> None:
        """The flow is over (answered, failed, or its client left): nothing of it may keep running."""
        self._pending.pop(flow_id, None)
        exchange = self._exchanges.pop(flow_id, None)
        if exchange is not None:
            exchange.abort()

    def _begin(self, conn: _RelayConnection, request: RelayRequest) -> Exchange | Canned | None:
        flow_id = request.headers.get(FLOW_HEADER, "")
        state = self._pending.pop(flow_id, None)
        if state is None or isinstance(state, Canned):
            return state
        exchange = Exchange(flow_id, conn, self.backend, state, request, self.heartbeat)
        self._exchanges[flow_id] = exchange
        return exchange

    def _ended(self, exchange: Exchange) -> None:
        if self._exchanges.get(exchange.flow_id) is exchange:
            del self._exchanges[exchange.flow_id]


def _plain(status: int, message: str) -> bytes:
    body = ProxyError(status, message, code="relay_refused").encoded(anthropic=False)
    return http_head(status, {"content-type": "application/json", "connection": "close"}, body)


class _RelayConnection(asyncio.Protocol):
    """One connection from mitmproxy: requests one after another, each served by an Exchange."""

    def __init__(self, server: RelayServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head: tuple[str, str, dict[str, str], int] | None = None
        self.exchange: Exchange | None = None
        self.last_activity = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._connections.add(self)
        self._arm(RELAY_HEAD_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        self.buf += data
        if self.exchange is None:
            self._parse()
        elif len(self.buf) > MAX_HEAD:  # mitmproxy never pipelines: this is not mitmproxy
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.abort()
            self.server._ended(exchange)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume()

    # Downstream, for the exchange

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def exchange_done(self, exchange: Exchange) -> None:
        if self.exchange is exchange:
            self.exchange = None
            self.server._ended(exchange)
            self.last_activity = self.loop.time()
            if self.buf:
                self._parse()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # parsing

    def _refuse(self, status: int, message: str) -> None:
        log.info("relay refused a request: %s", message)
        self.write(_plain(status, message))
        self.buf.clear()
        self.close()

    def _parse(self) -> None:
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._refuse(431, "request head too large")
                return
            try:
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                method, path, version = lines[0].split(" ")
                if not version.startswith("HTTP/1."):
                    raise ValueError(version)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if not sep:
                        raise ValueError(line)
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
            except ValueError:
                return self._refuse(400, "malformed request")
            if headers.get(FLOW_HEADER, "") not in self.server._pending:
                return self._refuse(403, "not a live codex-api-proxy flow")
            if "transfer-encoding" in headers or length < 0:
                return self._refuse(400, "the relay takes content-length bodies only")
            if length > MITMPROXY_BODY:
                return self._refuse(413, "request body too large")
            del buf[: end + 4]
            self.head = (method, path, headers, length)
        method, path, headers, length = self.head
        if len(buf) < length:
            return
        body = bytes(buf[:length])
        del buf[:length]
        self.head = None
        request = RelayRequest(method, path, headers, body)
        exchange = self.server._begin(self, request)
        if isinstance(exchange, Canned):
            self.write(exchange.serialise())
            return
        if exchange is None:  # forgotten while its body arrived (the client left)
            self.write(_plain(409, "this flow is no longer live"))
            self.close()
            return
        self.exchange = exchange
        exchange.start()  # may finish at once (an error answer): exchange_done then clears it

    # idle connections

    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.exchange is not None:
            self._arm(RELAY_HEAD_TIMEOUT)
            return
        limit = RELAY_HEAD_TIMEOUT if self.buf or self.head else RELAY_IDLE_TIMEOUT
        idle = self.loop.time() - self.last_activity
        if idle >= limit:
            self.close()
        else:
            self._arm(min(limit - idle, RELAY_HEAD_TIMEOUT) + 0.01)
