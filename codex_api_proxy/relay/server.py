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
relay nor make it buffer; heads and bodies are bounded, a request must arrive within RELAY_HEAD_TIMEOUT of
its first byte, and idle connections are closed. No secret is needed on the flow, so mitmweb shows
nothing worth stealing (a replay finds its id used up). The request body the upstream gets is the one
the gateway registered on the `FlowState`: mitmproxy sends an empty one over this hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from ..core.errors import ProxyError
from ..core.limits import MITMPROXY_BODY, RELAY_HEAD_TIMEOUT, RELAY_IDLE_TIMEOUT
from . import http11
from .backend import Backend
from .exchange import Exchange, FlowState, RelayRequest

log = logging.getLogger(__name__)

FLOW_HEADER = "x-cxp-flow"  # the flow's id: the state the addon registered for it, served once


@dataclass(frozen=True)
class Canned:
    """An answer decided before the upstream was asked (a request the boundary refused)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def serialise(self) -> bytes:
        return http11.response(self.status, {k.lower(): v for k, v in self.headers.items()}, self.body)


class RelayServer:
    """The loopback HTTP/1.1 endpoint mitmproxy forwards translated flows to."""

    def __init__(
        self,
        backend: Backend,
        heartbeat: float,
        idle_timeout: float = RELAY_IDLE_TIMEOUT,
        head_timeout: float = RELAY_HEAD_TIMEOUT,
    ) -> None:
        self.backend = backend
        self.heartbeat = heartbeat
        self.idle_timeout = idle_timeout
        self.head_timeout = head_timeout
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
    return http11.response(status, {"content-type": "application/json", "connection": "close"}, body)


class _RelayConnection(asyncio.Protocol):
    """One connection from mitmproxy: requests one after another, each served by an Exchange."""

    def __init__(self, server: RelayServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = http11.Parser("server")
        self.request: http11.Request | None = None  # a head whose body is still arriving
        self.exchange: Exchange | None = None
        self.last_activity = self.loop.time()
        self.started: float | None = None  # loop.time() of the first byte of a request not yet whole
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._connections.add(self)
        self.started = self.last_activity
        self.parser.next_message()
        self._arm(min(self.server.head_timeout, self.server.idle_timeout))

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.last_activity = self.loop.time()
        if self.started is None and self.exchange is None:
            self.started = self.last_activity
        try:
            events = self.parser.feed(data)
        except http11.ProtocolError as error:
            self._refuse(error.status, f"malformed request: {error.message}")
            return
        if self.exchange is not None:
            if self.parser.buffered > http11.MAX_HEAD:  # mitmproxy never pipelines: this is not mitmproxy
                self.close()
            return
        self._events(events)

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
            self._next()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # requests

    def _refuse(self, status: int, message: str) -> None:
        log.info("relay refused a request: %s", message)
        self.write(_plain(status, message))
        self.close()

    def _next(self) -> None:
        """The last request is answered: read the next one (its bytes may be here already)."""
        self.last_activity = self.loop.time()
        self.started = self.last_activity if self.parser.buffered else None
        try:
            events = self.parser.next_message()
        except http11.ProtocolError as error:
            self._refuse(error.status, f"malformed request: {error.message}")
            return
        self._events(events)

    def _events(self, events: list[http11.Event]) -> None:
        for event in events:
            if isinstance(event, http11.Request):
                if event.headers.get(FLOW_HEADER, "") not in self.server._pending:
                    return self._refuse(403, "not a live codex-api-proxy flow")
                if event.length is None:
                    return self._refuse(400, "the relay takes content-length bodies only")
                if event.length > MITMPROXY_BODY:
                    return self._refuse(413, "request body too large")
                self.request = event
            elif event is http11.END:
                self._serve()
                return  # one request at a time: the next waits for _next()
            # body bytes: the upstream body is the one on the FlowState, whatever mitmproxy sends

    def _serve(self) -> None:
        head, self.request = self.request, None
        assert head is not None
        self.started = None
        request = RelayRequest(head.method, head.target, head.headers)
        exchange = self.server._begin(self, request)
        if isinstance(exchange, Canned):
            self.write(exchange.serialise())
            self._next()
            return
        if exchange is None:  # forgotten while its body arrived (the client left)
            self.write(_plain(409, "this flow is no longer live"))
            self.close()
            return
        self.exchange = exchange
        exchange.start()  # may finish at once (an error answer): exchange_done then clears it

    # idle connections and slow requests

    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        server, now = self.server, self.loop.time()
        if self.exchange is not None:
            self._arm(min(server.head_timeout, server.idle_timeout))
        elif self.started is not None:  # a request is arriving: whole within head_timeout, or cut
            late = now - self.started - server.head_timeout
            if late >= 0:
                log.info(
                    "relay closed a connection whose request did not arrive in %.0f s", server.head_timeout
                )
                self.close()
            else:
                self._arm(-late + 0.01)
        else:
            idle = now - self.last_activity
            if idle >= server.idle_timeout:
                self.close()
            else:
                self._arm(min(server.idle_timeout - idle, server.head_timeout) + 0.01)
