"""One generation request on the relay's side: sent upstream, read back, translated, written out.

The addon translates the client's request and registers a `FlowState` (with the upstream body, so
mitmproxy sends none over the loopback hop; `flow_state(flow)` is the one way to a flow's state);
mitmproxy then sends the flow to the relay, which hands it to an `Exchange`. Where things happen, each in one place:
- the request goes upstream in `Exchange.run` (through `Backend.send`: credentials, 401 retry);
- a stream is read in `_StreamSink.data`: each upstream read is translated and written toward the
  client as one chunk, however many events it held (one syscall per read, not per event);
- the client's departure reaches `Exchange.abort` (from the relay connection's `connection_lost`),
  which drops the upstream connection at once, in every phase.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.errors import ERROR_EVENT, HEARTBEAT_EVENT, ProxyError, from_upstream
from ..core.headers import passed_back
from ..core.limits import MAX_ERROR_BODY, MAX_JSON_ANSWER
from ..core.sse import frame
from ..translate.accumulate import StreamFolder, usage_of
from ..translate.base import RequestContext, Translator
from ..translate.passthrough import PassthroughStream, body_usage
from . import http11
from .backend import Backend
from .pool import Response

log = logging.getLogger(__name__)

COALESCE = 0.004  # seconds: stream bytes arriving this soon after a write join the next one
_HEARTBEAT = frame({"type": HEARTBEAT_EVENT}, HEARTBEAT_EVENT)
_STREAM_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_JSON = {"content-type": "application/json"}


@dataclass
class Family:
    """One client API dialect: its translator module and its error envelope."""

    name: str
    module: Translator
    anthropic: bool = False
    passthrough_path: str | None = None  # in API-key mode, forwarded unchanged to {openai_url}/<this>
    upstream_path: str = "responses"  # translated requests go to {upstream}/<this>
    unary: bool = False  # the upstream answers JSON (module.aggregate reads it), not a Responses stream


@dataclass
class FlowState:
    """What the addon decided about a flow, and what the exchange learned while serving it."""

    family: Family
    ctx: RequestContext
    passthrough: bool
    route: str = "codex"  # "codex" (ChatGPT backend) or "openai" (API-key mode)
    path: str = "responses"
    model_sent: str = ""
    failure: ProxyError | None = None
    usage: dict[str, int] | None = None
    first_byte: float | None = None  # monotonic time of the first byte written toward the client
    translate_seconds: float = 0.0  # time spent translating the answer: the proxy's own share
    body: bytes = b""  # the upstream request body: the relay sends it, mitmproxy need not carry it

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        """mitmweb deep-copies flow.metadata and writes it with tnetstring (File > Save, Duplicate,
        Replay), which holds plain data only: a copy is what the flow was, not its live translator."""
        return {"family": self.family.name, "route": self.route, "model": self.ctx.model,
                "model_sent": self.model_sent, "stream": self.ctx.stream, "usage": dict(self.usage or {})}  # fmt: skip


class _Flow(Protocol):
    metadata: dict[str, Any]


_STATE_KEY = "codex_api_proxy"  # where a flow carries its FlowState: read and written only below


def flow_state(flow: _Flow) -> FlowState | None:
    """The FlowState the gateway registered for a flow it translated; None for every other flow (and
    for a flow mitmweb duplicated or loaded from a file: its copy is plain data, see __deepcopy__)."""
    state = flow.metadata.get(_STATE_KEY)
    return state if isinstance(state, FlowState) else None


def set_flow_state(flow: _Flow, state: FlowState) -> None:
    flow.metadata[_STATE_KEY] = state


class Downstream(Protocol):
    """The relay connection an exchange writes to (toward mitmproxy, then the client)."""

    def write(self, data: bytes) -> None: ...
    def exchange_done(self, exchange: Exchange) -> None: ...
    def close(self) -> None: ...


@dataclass
class RelayRequest:
    """The request head mitmproxy sent to the relay (its body, if any, is not used: see FlowState.body)."""

    method: str
    path: str
    headers: dict[str, str]


class Exchange:
    """Serves one relayed request; `abort()` ends it from outside (the client went away)."""

    def __init__(
        self,
        flow_id: str,
        downstream: Downstream,
        backend: Backend,
        state: FlowState,
        request: RelayRequest,
        heartbeat: float,
    ) -> None:
        self.flow_id = flow_id
        self.downstream = downstream
        self.backend = backend
        self.state = state
        self.request = request
        self.heartbeat = heartbeat
        self.response: Response | None = None
        self.task: asyncio.Task[None] | None = None
        self.finished = False  # the client's answer is complete (or the client is gone)
        self._done: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []  # stream bytes waiting for the next write (see write_chunk)
        self._flush_timer: asyncio.TimerHandle | None = None
        self._last_flush = float("-inf")
        self.last_sent = self._loop.time()  # loop time of the last bytes written toward the client
        self._head = b""  # a stream's head, sent with its first chunk when that is already here

    def start(self) -> None:
        """Runs at once up to its first wait: the upstream request is written in this same turn."""
        self.task = asyncio.Task(self.run(), loop=asyncio.get_running_loop(), eager_start=True)

    async def run(self) -> None:
        state, request = self.state, self.request
        try:
            response = await self.backend.send(
                state.route, request.method, state.path, state.body or None, request.headers
            )
            self.response = response
            headers = passed_back(response.headers)
            if response.status >= 400:
                body = await response.read(MAX_ERROR_BODY)
                self.respond_error(from_upstream(response.status, body, response.headers), headers)
            elif not response.headers.get("content-type", "").startswith("text/event-stream"):
                body = await response.read(MAX_JSON_ANSWER)
                if state.passthrough and not state.ctx.stream:
                    state.usage = body_usage(body)
                    self.respond(response.status, {**_JSON, **headers}, body)
                elif state.family.unary:
                    answer = state.family.module.from_response(state.family.module.aggregate(body), state.ctx)
                    self.respond(
                        200,
                        {**_JSON, **headers},
                        json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode(),
                    )
                else:
                    error = ProxyError(
                        502, "upstream answered without a stream", code="bad_upstream_response"
                    )
                    self.respond_error(error, headers)
            elif state.ctx.stream:
                await self.stream(response, headers)
            else:
                await self.aggregate(response, headers)
        except ProxyError as error:
            self.respond_error(error, {})
        except asyncio.CancelledError:
            self.close_upstream()
            raise
        except Exception:
            log.exception("relaying %s failed", state.family.name)
            self.respond_error(ProxyError(500, "codex-api-proxy failed to relay this request"), {})
        finally:
            self.finish()

    # writing toward the client

    def respond(self, status: int, headers: dict[str, str], body: bytes) -> None:
        if self.finished:
            return
        self.mark_first_byte()
        self.downstream.write(http11.response(status, headers, body))
        self.finish()

    def respond_error(self, error: ProxyError, headers: dict[str, str]) -> None:
        self.state.failure = error
        body = error.encoded(self.state.family.anthropic)
        self.respond(error.status, {**_JSON, **headers, **error.headers()}, body)

    def mark_first_byte(self) -> None:
        if self.state.first_byte is None:
            self.state.first_byte = time.monotonic()

    def write_chunk(self, data: bytes) -> None:
        """Stream bytes toward the client. The first bytes after a pause go at once; bytes that follow
        within COALESCE of the last write go together with it: each write costs a loopback send on
        both hops and a pass through mitmproxy (~60 µs of kernel time per send here), which at one
        event per millisecond was most of the proxy's CPU, while a few ms are invisible to a reader."""
        if not data or self.finished:
            return
        self._out.append(data)
        if self._flush_timer is None:
            due = self._last_flush + COALESCE
            if self._loop.time() >= due:
                self.flush()
            else:
                self._flush_timer = self._loop.call_at(due, self.flush)

    def flush(self) -> None:
        self._flush_timer = None
        if self.finished:
            return
        head, self._head = self._head, b""
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out.clear()
            self.mark_first_byte()
            self.downstream.write(head + http11.chunk(data) if head else http11.chunk(data))
            self._last_flush = self.last_sent = self._loop.time()
        elif head:
            self.downstream.write(head)
            self.last_sent = self._loop.time()

    def end_chunks(self) -> None:
        if not self.finished:
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            self.flush()
            self.downstream.write(http11.LAST_CHUNK)
            self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.downstream.exchange_done(self)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # the two ways an SSE answer is read

    async def stream(self, response: Response, headers: dict[str, str]) -> None:
        state = self.state
        if state.passthrough:
            translator: Any = PassthroughStream(responses_dialect=state.family.name == "responses")
        else:
            translator = state.family.module.Stream(state.ctx)
        self._done = asyncio.get_running_loop().create_future()
        sink = _StreamSink(self, translator, response)
        # The first events most often came in the same read as the upstream's head: they and the
        # client's head go in one write (one loopback send, one pass through mitmproxy). If none did,
        # the head goes alone at once, in this same turn.
        self._head = http11.response(200, {**headers, **_STREAM_HEADERS})
        response.start(sink)
        if self._head and not self.finished:
            head, self._head = self._head, b""
            self.downstream.write(head)
            self.last_sent = self._loop.time()
        sink.schedule_heartbeat()
        try:
            await self._done
        finally:
            sink.stop()
            state.usage = getattr(translator, "usage", None) or state.usage

    async def aggregate(self, response: Response, headers: dict[str, str]) -> None:
        """A non-streaming client: fold the events as they come, answer one JSON body at the end."""
        state = self.state
        self._done = asyncio.get_running_loop().create_future()
        sink = _AggregateSink(self._done)
        response.start(sink)
        await self._done
        if sink.failure is not None or sink.final is None:
            self.close_upstream()
            raise sink.failure or ProxyError(502, "upstream stream ended before the response was complete")
        final = sink.final
        state.usage = usage_of(final)
        body = state.family.module.from_response(final, state.ctx)
        self.respond(
            200, {**_JSON, **headers}, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        )

    # the client went away

    def abort(self) -> None:
        """The client went away (the relay connection closed) or the flow is over: stop everything now.
        A half-written answer cannot be finished, so the relay connection goes too."""
        if not self.finished:
            self.finished = True
            self.downstream.close()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self.close_upstream()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def close_upstream(self) -> None:
        if self.response is not None:
            self.response.close()

    def pause(self) -> None:
        if self.response is not None:
            self.response.pause()

    def resume(self) -> None:
        if self.response is not None:
            self.response.resume()


class _StreamSink:
    """Translates an upstream SSE body as it arrives; one write toward the client per upstream read."""

    def __init__(self, exchange: Exchange, translator: Any, response: Response) -> None:
        self.exchange = exchange
        self.translator = translator
        self.response = response
        self.at_boundary = True  # the last upstream bytes ended an event: a heartbeat may go in here
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    def data(self, chunk: bytes) -> None:
        started = time.perf_counter()
        out = self.translator(chunk)
        self.at_boundary = chunk.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))
        self._emit(out)
        self.exchange.state.translate_seconds += time.perf_counter() - started

    def end(self) -> None:
        self._emit(self.translator(b""), last=True)

    def error(self, error: ProxyError) -> None:
        log.warning("upstream stream failed: %s", error.message)
        if not self.at_boundary:  # cut inside an event: its half is dropped, the failure is what is told
            self.translator.discard_partial()
        out = self.translator(frame(error.event(), ERROR_EVENT))
        self._emit(out + self.translator(b""), last=True)

    def _emit(self, out: list[bytes], last: bool = False) -> None:
        exchange = self.exchange
        if exchange.finished:
            return
        if out:
            exchange.write_chunk(out[0] if len(out) == 1 else b"".join(out))
        if last or self.translator.finished:
            # the client's answer is complete: end it now. An upstream that already sent its last
            # event finishes in the background and keeps its pooled connection; one cut short by a
            # stop sequence or a failure is dropped, so the model stops generating.
            if not last and not getattr(self.translator, "upstream_ended", False):
                exchange.close_upstream()
            if self.translator.failure is not None:
                exchange.state.failure = self.translator.failure
            exchange.end_chunks()

    def schedule_heartbeat(self) -> None:
        """Heartbeats follow what the CLIENT received, not what the upstream sent: an upstream busy
        with events this client does not see (reasoning summaries on chat, SSE comments) leaves the
        client's line as silent as no upstream bytes at all, and its read timeout as close."""
        if self.exchange.heartbeat > 0 and not self.exchange.finished:
            due = self.exchange.last_sent + self.exchange.heartbeat
            self._timer = self.loop.call_at(max(due, self.loop.time() + 0.01), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.exchange.finished:
            return
        silent = self.loop.time() - self.exchange.last_sent
        if silent >= self.exchange.heartbeat and self.at_boundary:
            self._emit(self.translator(_HEARTBEAT))
            self._timer = self.loop.call_later(self.exchange.heartbeat, self._tick)
        else:
            self.schedule_heartbeat()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _AggregateSink:
    """Folds the upstream's events as they come (accumulate.StreamFolder), without keeping the bytes."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.folder = StreamFolder()
        self.failure: ProxyError | None = None
        self.final: dict[str, Any] | None = None

    def data(self, chunk: bytes) -> None:
        if not self.done.done():
            self._settle(self.folder.feed, chunk)

    def end(self) -> None:
        if not self.done.done():
            self._settle(self.folder.finish)

    def error(self, error: ProxyError) -> None:
        self.failure = error
        self._wake()

    def _settle(self, step: Any, *args: Any) -> None:
        try:
            self.final = step(*args)
        except ProxyError as error:
            self.failure = error
        if self.final is not None or self.failure is not None:
            self._wake()

    def _wake(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
