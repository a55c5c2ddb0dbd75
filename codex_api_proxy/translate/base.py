"""What every API family's translator shares: the request context (the options the gateway gives, the
state the request learns on its way up) and the incremental stream driver.

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

from ..core.cache_health import CacheHealth, Thread
from ..core.conversations import Conversation
from ..core.errors import ERROR_EVENT, HEARTBEAT_EVENT, ProxyError, bad_request, from_event
from ..core.sse import SSEEvent, SSEParser, comment
from ..core.tokens import Calibration
from .accumulate import usage_of
from .events import EventOrder
from .tool_order import ToolOrder

log = logging.getLogger(__name__)

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})
FAILURE_EVENTS = frozenset({"response.failed", "error", ERROR_EVENT})


@dataclass(frozen=True)
class TranslatorOptions:
    """What the gateway gives a translator for one request: the person's settings and the shared
    stores on the Runtime that the family's turns feed or read (proxy/gateway.py `translator_options`).
    Each family reads only its own fields; the defaults are "none given", so a test passes only what
    it exercises."""

    # every family: the per-conversation tool order, so a tool loaded later costs no cached prompt
    tool_order: ToolOrder | None = None
    # anthropic: the person's Claude name -> GPT model map, over DEFAULT_MODEL_MAP (core/models.py)
    model_map: dict[str, str] | None = None
    # anthropic: per-conversation token counts learned from earlier turns, for count_tokens and probes
    calibration: Calibration | None = None
    # anthropic: per-conversation prompt cache hits, noted when a turn's usage comes back
    cache_health: CacheHealth | None = None
    # chat: reasoning summaries go to the client as `reasoning_content` (asked upstream for them)
    expose_reasoning: bool = False
    # responses: this account's stored items and turns (`store`, `previous_response_id`); None: none kept
    conversation: Conversation | None = None


@dataclass
class RequestState:
    """What one request learns on its way up that its answer needs on the way back: written by the
    family's `to_upstream` (and two fields by the gateway), read by its `from_response` / `Stream` and
    by the metrics. Each field's comment says which family writes it."""

    # chat, anthropic, responses: {upstream tool name: client tool name} for names shortened or renamed
    tool_names: dict[str, str] = field(default_factory=dict)
    # chat: the answer is cut at the first of these (`stop`)
    stop: list[str] = field(default_factory=list)
    # chat: a usage chunk before `[DONE]` (`stream_options.include_usage`)
    include_usage: bool = False
    # chat: the request used the legacy `functions` field, so the answer gets `function_call`
    legacy_functions: bool = False
    # anthropic: the GPT model the Claude name mapped to (signatures, cache health)
    upstream_model: str = ""
    # anthropic: the client asked for thinking blocks
    thinking: bool = False
    # anthropic: the answer is cut at the first of these (`stop_sequences`)
    stop_sequences: list[str] = field(default_factory=list)
    # anthropic: the prompt cache key sent upstream and the client's body, for token calibration
    cache_key: str = ""
    request_body: dict[str, Any] | None = None
    # responses: (input sent upstream, client items with ids) for the conversation store; None: not kept
    conversation_sent: tuple[list[Any], list[Any]] | None = None
    # gateway: the prompt cache key as the usage page's conversation ("" without one)
    conversation: str = ""
    # gateway: the cache-health record of this request's conversation (core/cache_health.py)
    cache_thread: Thread | None = None


@dataclass
class RequestContext:
    """What a translation needs to know about the client request besides its body."""

    model: str = ""  # the model name the client asked for, echoed back to it
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    options: TranslatorOptions = field(default_factory=TranslatorOptions)  # given, read-only
    state: RequestState = field(default_factory=RequestState)  # learnt on the way up, read on the way back


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
