"""What every API family's translator shares: the request context and the incremental stream driver.

A `StreamTranslator` is fed raw upstream bytes (Responses API SSE, plus the relay's heartbeat and
error events) chunk by chunk and returns the client's bytes for that chunk. The relay's exchange calls
it (relay/exchange.py, `_StreamSink`) once per upstream read and once with `b""` at the end, and
writes what it returns toward the client as one chunk. It always returns a list, and it never raises:
the answer's head has already gone, so a failure must reach the client as the family's own error
event, not as a cut connection.
"""

from __future__ import annotations

import functools
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.errors import ERROR_EVENT, HEARTBEAT_EVENT, ProxyError, bad_request, from_event
from ..core.sse import SSEEvent, SSEParser, comment
from .accumulate import usage_of
from .events import EventOrder

log = logging.getLogger(__name__)

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
FAILURE_EVENTS = frozenset({"response.failed", "error", ERROR_EVENT})


@dataclass
class RequestContext:
    """What a translation needs to know about the client request besides its body."""

    model: str = ""  # the model name the client asked for, echoed back to it
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    options: dict[str, Any] = field(default_factory=dict)  # family-specific settings and state


class Translator(Protocol):
    """What the exchange needs of a family's translator (each family's package is one): the request
    going up, the whole answer coming back, and the stream translator; a unary family (compact) also
    has `aggregate`, reading the upstream's JSON answer."""

    def to_upstream(self, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]: ...

    def from_response(self, response: dict[str, Any], ctx: RequestContext) -> dict[str, Any]: ...

    def Stream(self, ctx: RequestContext) -> StreamTranslator: ...  # the class, called like a function


def client_errors(translate: Callable[..., Any]) -> Callable[..., Any]:
    """A body of the wrong shape is the client's mistake: a 400, never a 500 with a traceback.

    Translators check the fields they know and name them; this catches the shapes nobody listed
    (a number where a list of blocks was expected, an unhashable block type...)."""

    @functools.wraps(translate)
    def checked(body: Any, *args: Any) -> Any:
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object", code="invalid_json")
        try:
            return translate(body, *args)
        except ProxyError:
            raise
        except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError) as exc:
            log.info("refused a malformed %s body: %r", translate.__module__.rsplit(".", 1)[-1], exc)
            raise bad_request(
                f"the request body has a value of the wrong type or shape ({type(exc).__name__}: "
                f"{str(exc)[:200]})",
                code="invalid_request_body",
            ) from None

    return checked


class StreamTranslator(ABC):
    """Drives one upstream stream through a family's event handlers."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._order = EventOrder()
        self.finished = False  # a terminal event or a failure was translated; ignore the rest
        self.upstream_ended = False  # the upstream sent its own last event (terminal or failure)
        self.failure: ProxyError | None = None
        self.failure_event: dict[str, Any] | None = None  # the upstream event that reported it, if any
        self.raw_data = ""  # the current event's JSON as the upstream sent it, "" when reshaped (events.py)
        self.usage: dict[str, int] | None = None  # the terminal event's token usage (`usage_of`), for metrics

    def __call__(self, chunk: bytes) -> list[bytes]:
        if self.finished:
            return []
        out: list[bytes] = []
        try:
            events = self._parser.feed(chunk) if chunk else self._parser.flush()
            for event in events:
                out += self._dispatch(event)
                if self.finished:
                    break
            if not chunk and not self.finished:
                out += self.fail(ProxyError(502, "upstream stream ended before the response was complete"))
        except Exception:
            log.exception("stream translation failed")
            out += self.fail(ProxyError(500, "codex-api-proxy failed to translate the upstream stream"))
        return out

    def discard_partial(self) -> None:
        """The upstream connection broke inside an event: drop its part (see SSEParser.discard)."""
        self._parser.discard()

    def _dispatch(self, event: SSEEvent) -> list[bytes]:
        if not event.data or event.data == "[DONE]":
            return []
        try:
            data = json.loads(event.data)
        except ValueError:
            return self.fail(ProxyError(502, "upstream sent an event that is not JSON"))
        if not isinstance(data, dict):
            return []
        kind = data.get("type") or event.event
        self.upstream_ended = kind in TERMINAL_EVENTS or kind in FAILURE_EVENTS
        if kind == HEARTBEAT_EVENT:
            return self.on_heartbeat()
        if kind in FAILURE_EVENTS:
            out = self._translate(self._order.flush())
            self.failure_event = data
            return out + self.fail(from_event(data))
        if "type" not in data:
            data = {**data, "type": kind}
        return self._translate(self._order.feed(data), data, event.data)

    def _translate(
        self, events: list[dict[str, Any]], original: dict[str, Any] | None = None, raw: str = ""
    ) -> list[bytes]:
        """Canonically ordered events (events.py) -> client bytes."""
        out: list[bytes] = []
        for data in events:
            if self.finished:
                break
            kind = str(data.get("type") or "")
            self.raw_data = raw if data is original else ""
            out += self.on_event(kind, data)
            if kind in TERMINAL_EVENTS:
                self.finished = True
                self.usage = usage_of(data.get("response") or {})
        return out

    def fail(self, error: ProxyError) -> list[bytes]:
        """Report a failure in-band once and stop: never a clean finish after an upstream failure."""
        if self.finished:
            return []
        self.finished = True
        self.failure = error
        return self.on_failure(error)

    @abstractmethod
    def on_event(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        """One upstream Responses event (terminal ones included) -> client bytes."""

    @abstractmethod
    def on_failure(self, error: ProxyError) -> list[bytes]:
        """The family's in-band error (Anthropic `event: error`, an OpenAI error chunk...)."""

    def on_heartbeat(self) -> list[bytes]:
        """The upstream has been silent for a while; default: an SSE comment keeps the line alive."""
        return [comment()]
