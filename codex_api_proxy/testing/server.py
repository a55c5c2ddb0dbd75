"""The fake backend's HTTP/1.1 server: a daemon thread running its own event loop, the main port and the
token endpoint's own port (which can be taken down and brought back), one task per connection reading
requests with the proxy's own codec (relay/http11.py) and recording each, and `Reply`, which writes one
answer: JSON, or a chunked stream flushed per write so delays and cuts reach the client as they happen.
What each request gets is FakeBackend's (`_dispatch`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from ..relay import http11
from .script import Recorded, phrase


def _parse_body(raw: bytes, content_type: str) -> Any:
    """JSON whatever the content type says; form fields only as a fallback (the token endpoint takes both)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        if "application/x-www-form-urlencoded" in content_type:
            return dict(parse_qsl(raw.decode("utf-8", "replace")))
        return None


async def _watch_close(reader: asyncio.StreamReader, rec: Recorded) -> None:
    """Notice the client going away while its request is being answered (stalls included)."""
    while not reader.at_eof() and reader.exception() is None:
        await asyncio.sleep(0.02)
    rec.closed_at = time.monotonic()


class Reply:
    """Writes one HTTP/1.1 answer: a JSON body, or a chunked stream flushed per write."""

    def __init__(self, writer: asyncio.StreamWriter, rec: Recorded, keep_alive: bool) -> None:
        self.writer, self.rec, self.keep_alive = writer, rec, keep_alive

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.rec.status = status
        fields = [*headers.items(), *([("connection", "close")] if not self.keep_alive else [])]
        self.writer.write(http11.response_head(status, fields, phrase(status)))

    async def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._head(
            status, {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}
        )
        self.writer.write(data)
        await self.writer.drain()

    async def start_stream(self, headers: dict[str, str]) -> None:
        base = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
        }
        self._head(200, {**base, **headers})
        await self.writer.drain()

    async def chunk(self, data: bytes) -> None:
        self.writer.write(http11.chunk(data))
        await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(http11.LAST_CHUNK)
        await self.writer.drain()


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: http11.Parser
) -> tuple[http11.Request, bytes]:
    """The next request on a connection, through the proxy's own codec (EOFError: the client left)."""
    events = parser.next_message()
    head: http11.Request | None = None
    body = bytearray()
    while True:
        for event in events:
            if isinstance(event, http11.Request):
                head = event
                if head.headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            elif event is http11.END:
                assert head is not None
                return head, bytes(body)
            else:
                body += event
        data = await reader.read(1 << 16)
        if not data:
            parser.feed_eof()
            raise EOFError("the client closed the connection")
        events = parser.feed(data)


class LoopbackServer:
    """Serving FakeBackend on 127.0.0.1 from a thread of its own. A part of FakeBackend, which holds the
    state and answers each request in `_dispatch`."""

    port: int
    connections_opened: int
    _requests: list[Recorded]
    _lock: threading.Lock
    _tasks: set[asyncio.Task[Any]]
    _thread: threading.Thread | None
    _loop: asyncio.AbstractEventLoop | None
    _stopping: asyncio.Event | None
    _token_server: asyncio.Server | None
    _token_port: int
    _token_writers: set[asyncio.StreamWriter]

    @property
    def token_down(self) -> bool:
        return self._token_server is None

    @token_down.setter
    def token_down(self, down: bool) -> None:
        """Take the token endpoint down (its port refuses connections, open ones are cut) or bring it back
        on the same port. Blocks until done; call it from any thread but the fake's own."""
        if down == self.token_down or self._loop is None:
            return
        change = self._close_token_endpoint() if down else self._open_token_endpoint()
        asyncio.run_coroutine_threadsafe(change, self._loop).result(10)

    def start(self) -> Self:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(ready, failure)), name="fake-codex-backend", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"fake backend failed to start: {failure[0] if failure else 'timeout'}")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, limit=1 << 20)
            await self._open_token_endpoint()
        except OSError as exc:
            failure.append(exc)
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        await self._stopping.wait()
        server.close()
        await self._close_token_endpoint()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _open_token_endpoint(self) -> None:
        self._token_server = await asyncio.start_server(
            self._token_connection, "127.0.0.1", self._token_port, limit=1 << 20
        )
        self._token_port = self._token_server.sockets[0].getsockname()[1]

    async def _close_token_endpoint(self) -> None:
        server, self._token_server = self._token_server, None
        if server is not None:
            server.close()  # stops listening; the connections it accepted are cut below
        for writer in list(self._token_writers):
            writer.close()

    async def _token_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._token_writers.add(writer)
        try:
            await self._connection(reader, writer)
        finally:
            self._token_writers.discard(writer)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections_opened += 1
        parser = http11.Parser("server")
        try:
            while await self._exchange(reader, writer, parser):
                pass
        except (ConnectionError, EOFError, http11.ProtocolError):
            pass  # the client went away or sent garbage: drop the connection
        except asyncio.CancelledError:
            pass  # stop(): end quietly (a cancelled stream handler task gets logged as an error)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: http11.Parser
    ) -> bool:
        """Serve one request; True to keep the connection open for the next one."""
        request, raw = await _read_request(reader, writer, parser)
        method, target, headers = request.method, request.target, request.headers
        url = urlsplit(target)
        body = _parse_body(raw, headers.get("content-type", ""))
        rec = Recorded(method, url.path, dict(parse_qsl(url.query)), headers, body, raw)
        with self._lock:
            self._requests.append(rec)
        reply = Reply(writer, rec, request.keep_alive)
        watcher = asyncio.create_task(_watch_close(reader, rec))
        try:
            return await self._dispatch(method, url.path, rec, reply)
        finally:
            watcher.cancel()

    async def _dispatch(self, method: str, path: str, rec: Recorded, reply: Reply) -> bool:
        """Answer one request; True to keep the connection open for the next one."""
        raise NotImplementedError
