"""The upstream HTTP/1.1 client: pooled connections, bodies pushed chunk by chunk, our own timeouts.

Why not httpx on this hop: under load httpx/httpcore/h11/anyio took 28% of the proxy's CPU (a
failed `import sniffio` on every call among it), and its pull-style `aiter_raw` costs a task switch
per chunk. Here a connection is an `asyncio.Protocol`: `data_received` de-chunks what arrived and hands
it to the response's sink in one call, so one socket read upstream becomes one translation and one
write toward the client, whatever number of events it held.

What it does: HTTP/1.1 over TCP or TLS (ALPN http/1.1), through an outbound proxy (outbound.py: HTTP,
HTTPS or SOCKS5), keep-alive connections pooled per origin across all clients, a connect
timeout, a first-byte timeout (status line) and an idle timeout inside a body, and `close()`, which
drops the connection at once: the upstream sees its request end when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from ..core.errors import ProxyError
from ..core.limits import (
    BODY_SLICE,
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    MAX_IDLE_PER_ORIGIN,
    REUSED_FIRST_BYTE_TIMEOUT,
    UPSTREAM_KEEPALIVE,
)
from ..core.proxies import OutboundProxy, Proxies
from . import http11, outbound

log = logging.getLogger(__name__)


class BodySink(Protocol):
    """Where a response body goes once the caller has seen the head."""

    def data(self, chunk: bytes) -> None: ...
    def end(self) -> None: ...
    def error(self, error: ProxyError) -> None: ...


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def hostport(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> tuple[Origin, str]:
    """(origin, request target) of an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), target


def _unreachable(origin: Origin, exc: BaseException) -> ProxyError:
    """A 502 that says what happened in words (never an exception's class name)."""
    if isinstance(exc, ssl.SSLError):
        why = f"TLS failed: {exc.reason or exc.strerror or 'handshake error'}"
    elif isinstance(exc, OSError):
        why = exc.strerror or str(exc) or "connection failed"
    else:
        why = str(exc) or "connection failed"
    return ProxyError(502, f"upstream unreachable ({origin.host}): {why}", code="upstream_unreachable")


def _timeout(origin: Origin, what: str) -> ProxyError:
    return ProxyError(504, f"upstream {what} timed out ({origin.host})", code="upstream_timeout")


class Response:
    """An upstream response whose head has arrived; its body follows through `start(sink)`."""

    def __init__(self, conn: _Connection, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self._conn = conn

    @property
    def last_activity(self) -> float:
        """loop.time() of the last bytes from the upstream: the heartbeat and idle clocks read it."""
        return self._conn.last_activity

    def start(self, sink: BodySink) -> None:
        self._conn.attach(sink)

    async def read(self, limit: int) -> bytes:
        """The whole body, at most `limit` bytes (the rest is dropped with the connection)."""
        sink = _Collect(limit, asyncio.get_running_loop().create_future())
        self.start(sink)
        try:
            return await sink.done
        finally:
            if sink.truncated:
                self.close()

    def pause(self) -> None:
        self._conn.pause_reading()

    def resume(self) -> None:
        self._conn.resume_reading()

    def close(self) -> None:
        """Done with it: an unfinished body drops the connection, so the upstream stops generating."""
        self._conn.abandon()


@dataclass
class _Collect:
    limit: int
    done: asyncio.Future[bytes]
    buf: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def data(self, chunk: bytes) -> None:
        if self.done.done():
            return
        self.buf += chunk
        if len(self.buf) > self.limit:
            self.truncated = True
            self.done.set_result(bytes(self.buf[: self.limit]))

    def end(self) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.buf))

    def error(self, error: ProxyError) -> None:
        if not self.done.done():
            self.done.set_exception(error)


_IDLE, _BUSY, _CLOSED = range(3)


class _Connection(asyncio.Protocol):
    """One upstream connection: serves one request at a time, then returns to the pool. The framing
    is http11.Parser's; this class maps its events onto the head future and the body sink."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = http11.Parser("client")
        self.state = _IDLE
        self.head: asyncio.Future[Response] | None = None
        self.sink: BodySink | None = None
        self.pending: list[bytes] = []  # body bytes that came before a sink was attached
        self.keep_alive = True
        self.got_bytes = False  # anything at all arrived for the current request
        self.ended = False
        self.idle_since = 0.0
        self.last_activity = 0.0
        self.paused = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._timeout = pool.idle_timeout
        self.pending_error: ProxyError | None = None  # a failure before a sink was attached
        self.body: memoryview | None = None  # what is left to write of a large request body
        self.writing_paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        set_socket_options(transport)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        self.got_bytes = True
        if self.state != _BUSY:  # bytes on an idle connection: not a server we can trust to reuse
            self._drop()
            return
        try:
            events = self.parser.feed(data)
        except http11.ProtocolError as error:
            self._broken(error)
            return
        if events:
            self._events(events)

    def connection_lost(self, exc: Exception | None) -> None:
        state, self.state, self.body = self.state, _CLOSED, None
        self.pool.forget(self)
        self._cancel_idle_timer()
        if state != _BUSY:
            return
        try:
            events = self.parser.feed_eof()
        except http11.ConnectionCut:
            events = None
        if events:
            self._events(events)
        elif self.head is not None and not self.head.done():
            self.head.set_exception(_ConnectionLost(self.got_bytes))
        elif not self.ended:
            self._fail(ProxyError(502, "upstream connection lost mid-stream", code="upstream_cut"))

    # the request

    def send(self, head: bytes, body: bytes | None, method: str) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.state, self.got_bytes, self.ended, self.keep_alive = _BUSY, False, False, True
        self.sink, self.pending, self.pending_error = None, [], None
        self.head = self.loop.create_future()
        self.parser.next_message(method)
        if body is None or len(body) <= BODY_SLICE:
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self.body = memoryview(body)
            self.write_body()
        return self.head

    def write_body(self) -> None:
        """A large body goes in slices, each when the socket has taken the last (pause_writing and
        resume_writing): one write of it all would hold the event loop while asyncio copies what the
        socket did not take into its buffer, twice (~60 ms per copy of 60 MiB on this machine), and
        every other client waits meanwhile. The slices are views: no copy of the body is made here."""
        assert self.transport is not None
        while self.body is not None and not self.writing_paused and not self.transport.is_closing():
            piece, self.body = self.body[:BODY_SLICE], self.body[BODY_SLICE:] or None
            self.transport.write(piece)
        if self.transport.is_closing():
            self.body = None

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.write_body()

    def attach(self, sink: BodySink) -> None:
        self.sink = sink
        pending, self.pending = self.pending, []
        if pending:
            sink.data(b"".join(pending))
        if self.ended:
            self._settle()
        elif self.pending_error is not None:
            sink.error(self.pending_error)
        else:
            self._arm_idle_timer()

    def abandon(self) -> None:
        if not self.ended:
            self._drop()
        elif self.sink is None and self.state == _BUSY:
            self._settle()  # read to its end but never taken: reusable as it is

    def pause_reading(self) -> None:
        if self.transport and not self.paused and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport and self.paused and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()

    # the parser's events

    def _events(self, events: list[http11.Event]) -> None:
        for event in events:
            if type(event) is bytes:
                if self.sink is not None:
                    self.sink.data(event)
                else:
                    self.pending.append(event)
            elif event is http11.END:
                # more than the server announced: do not trust the connection again
                self.keep_alive = self.keep_alive and not self.parser.buffered
                self._finish()
            elif isinstance(event, http11.Response):
                self._head(event)

    def _head(self, event: http11.Response) -> None:
        self.keep_alive = event.keep_alive
        if event.status == 101:
            error = ProxyError(502, "upstream switched protocols (101)", code="bad_upstream")
            self._head_failed(error)
            return
        assert self.head is not None
        if not self.head.done():
            self.head.set_result(Response(self, event.status, event.headers))

    def _broken(self, error: http11.ProtocolError) -> None:
        failure = ProxyError(502, f"upstream broke HTTP/1.1: {error.message}", code="bad_upstream")
        if self.head is not None and not self.head.done():
            self._head_failed(failure)
        else:
            self._fail(failure)

    def _finish(self) -> None:
        """The body is complete. The connection goes back to the pool only once a sink has taken the
        body: until then it still holds it (a reuse would wipe what the caller has not read yet)."""
        self.ended = True
        self._cancel_idle_timer()
        if self.body is not None:  # answered before the whole body went: the connection is out of step
            self.keep_alive, self.body = False, None
        if self.sink is not None:
            self._settle()

    def _settle(self) -> None:
        sink = self.sink
        if self.state != _CLOSED:
            if self.keep_alive:
                self.state = _IDLE
                self.pool.release(self)
            else:
                self._drop()
        if sink is not None:
            sink.end()

    def _fail(self, error: ProxyError) -> None:
        self._cancel_idle_timer()
        sink = self.sink
        self.sink = None
        self._drop()
        if sink is not None:
            sink.error(error)
        elif not self.ended:
            self.pending_error = error

    def _head_failed(self, error: ProxyError) -> None:
        head = self.head
        self._drop()
        if head is not None and not head.done():
            head.set_exception(error)

    def _drop(self) -> None:
        self.keep_alive, self.body = False, None
        self.state = _CLOSED
        self.pool.forget(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # the idle clock: one timer that re-arms itself, not one per chunk

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is None and not self.ended and self.state != _CLOSED:
            self._idle_timer = self.loop.call_at(self.last_activity + self._timeout, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.ended or self.state == _CLOSED:
            return
        if self.loop.time() - self.last_activity >= self._timeout and not self.paused:
            self._fail(ProxyError(504, "upstream went silent mid-stream", code="upstream_timeout"))
        else:
            self._arm_idle_timer()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


class _ConnectionLost(Exception):
    def __init__(self, got_bytes: bool) -> None:
        super().__init__("the connection closed before the answer")
        self.got_bytes = got_bytes


def set_socket_options(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY, and TCP keep-alive probes on an upstream socket.

    asyncio sets TCP_NODELAY only on sockets it made itself (proto IPPROTO_TCP): a socket a SOCKS
    proxy's library connected (proto 0) would otherwise hold a small request back behind Nagle's
    algorithm until the last segment was acknowledged. Keep-alive probes find a peer that vanished
    (laptop sleep, a VPN or Wi-Fi switch, a NAT that forgot us) in KEEPALIVE_IDLE + KEEPALIVE_COUNT *
    KEEPALIVE_INTERVAL seconds of silence, pooled or mid-answer, instead of at the first-byte or idle
    timeout."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # Linux names the idle time TCP_KEEPIDLE, macOS TCP_KEEPALIVE
        idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
        for option, value in (
            (idle, KEEPALIVE_IDLE),
            (getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL),
            (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_COUNT),
        ):
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


class Pool:
    """Keep-alive upstream connections shared by every client of the proxy."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        first_byte_timeout: float,
        idle_timeout: float,
        proxies: Proxies,
        reused_first_byte_timeout: float = REUSED_FIRST_BYTE_TIMEOUT,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.reused_first_byte_timeout = reused_first_byte_timeout
        self.idle_timeout = idle_timeout
        self.proxies = proxies
        self._idle: dict[Origin, list[_Connection]] = {}
        self._routes: dict[Origin, OutboundProxy | None] = {}
        self._ssl: ssl.SSLContext | None = None
        self._live: set[_Connection] = set()

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        """Send a request and wait for the response head. Raises ProxyError 502 (unreachable) or 504."""
        origin, target = parse_url(url)
        proxy = self._route(origin)
        forward = outbound.absolute_form(proxy, origin.scheme)
        fields = [("host", origin.hostport), *headers.items()]
        if forward and proxy is not None and (authorization := proxy.basic_authorization()):
            fields.append(("proxy-authorization", authorization))
        if body or method in ("POST", "PUT", "PATCH"):
            fields.append(("content-length", str(len(body or b""))))
        head = http11.request_head(method, url if forward else target, fields)
        for attempt in (0, 1):
            conn = self._checkout(origin) if attempt == 0 else None  # a second try is on a fresh one
            if conn is not None and time.monotonic() - conn.idle_since > 1.0:
                # long idle: a server closing it may have sent its FIN already; let the loop read it
                # first (a connection reused at once costs no extra turn of the loop)
                await asyncio.sleep(0)
                if conn.state != _IDLE:
                    conn = None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, proxy)
            future = conn.send(head, body, method)
            bound = self.first_byte_timeout
            if reused and attempt == 0:
                bound = min(bound, self.reused_first_byte_timeout)
            try:  # (no shield: a cancelled head future is one the connection no longer answers)
                async with asyncio.timeout(bound):
                    return await future
            except TimeoutError:
                conn.abandon()
                if bound < self.first_byte_timeout and not conn.got_bytes:
                    # the network under it probably changed (sleep, VPN, Wi-Fi): its siblings are as dead
                    log.info("a reused upstream connection answered nothing in %.0f s: retrying", bound)
                    for idle in self._idle.pop(origin, []):
                        idle._drop()
                    continue
                raise _timeout(origin, "response") from None
            except _ConnectionLost as lost:
                # A reused connection that closed with nothing sent back is the keep-alive race (the
                # server closed it as the request went out) or a peer long gone: the request goes once
                # more, on a fresh connection. Anything else surfaces.
                if reused and not lost.got_bytes and attempt == 0:
                    continue
                raise _unreachable(origin, lost) from None
            except asyncio.CancelledError:
                conn.abandon()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _route(self, origin: Origin) -> OutboundProxy | None:
        if origin not in self._routes:  # every proxy setting was checked at start (Proxies.check)
            self._routes[origin] = self.proxies.for_origin(origin.scheme, origin.host, origin.port)
        return self._routes[origin]

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            alive = conn.state == _IDLE and conn.transport and not conn.transport.is_closing()
            if alive and now - conn.idle_since < UPSTREAM_KEEPALIVE:
                return conn
            conn._drop()
        return None

    async def _connect(self, origin: Origin, proxy: OutboundProxy | None) -> _Connection:
        conn = _Connection(self, origin)
        tls = self._context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                await outbound.connect(conn, origin.host, origin.port, tls=tls, proxy=proxy)
        except TimeoutError:
            conn._drop()
            raise _timeout(origin, "connect") from None
        except (OSError, ssl.SSLError) as exc:
            conn._drop()
            raise _unreachable(origin, exc) from None
        except ProxyError:
            conn._drop()
            raise
        self._live.add(conn)
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = outbound.trust_context()
        return self._ssl

    def release(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            conn._drop()
            return
        conn.idle_since = time.monotonic()
        conn.sink = None
        idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
        if conn.state == _CLOSED:
            self._live.discard(conn)

    def close(self) -> None:
        for conn in list(self._live):
            conn._drop()
        self._live.clear()
        self._idle.clear()
