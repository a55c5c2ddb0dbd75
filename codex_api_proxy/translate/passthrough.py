"""API-key mode: the OpenAI API already speaks the client's dialect, so its stream passes unchanged.

Only the relay's own events are rewritten: a heartbeat becomes an SSE comment and a transport failure
becomes the dialect's error event, so a cut stream never ends as if it were complete. The answer's token
usage is read on the way (`usage`, for metrics), parsing only the events that can carry it.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.errors import ERROR_EVENT, HEARTBEAT_EVENT, ProxyError, from_event
from ..core.sse import SSEEvent, SSEParser, comment, frame
from .accumulate import usage_of
from .base import TERMINAL_EVENTS
from .responses import error_event


def _json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def body_usage(body: bytes) -> dict[str, int] | None:
    """`answer_usage` of a whole JSON answer (None when it is not JSON)."""
    return answer_usage(_json(body))


def answer_usage(answer: Any) -> dict[str, int] | None:
    """Token usage (as `usage_of` gives it) of an OpenAI API answer in either dialect: a Chat
    Completion or its last chunk, or a Responses object; None when it carries none."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    if "prompt_tokens" not in usage:
        return usage_of(answer)
    inp, out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "input": inp,
        "cached": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        "output": out,
        "reasoning": int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0),
        "total": int(usage.get("total_tokens") or inp + out),
    }


class PassthroughStream:
    """mitmproxy stream callable for OpenAI-dialect streams (Chat Completions or Responses)."""

    def __init__(self, responses_dialect: bool) -> None:
        self._parser = SSEParser()
        self._responses = responses_dialect
        self.failure: ProxyError | None = None
        self.upstream_ended = False  # never cut short: the upstream's own end ends the client's stream
        self.usage: dict[str, int] | None = None

    @property
    def finished(self) -> bool:
        return self.failure is not None

    def __call__(self, chunk: bytes) -> list[bytes]:
        events = self._parser.feed(chunk) if chunk else self._parser.flush()
        return [self._reframe(event) for event in events if self.failure is None]

    def discard_partial(self) -> None:
        """The upstream connection broke inside an event: drop its part (see SSEParser.discard)."""
        self._parser.discard()

    def _reframe(self, event: SSEEvent) -> bytes:
        kind = event.event
        if kind in (HEARTBEAT_EVENT, ERROR_EVENT):
            if kind == HEARTBEAT_EVENT:
                return comment()
            self.failure = from_event(json.loads(event.data))
            return error_event(self.failure) if self._responses else frame(self.failure.openai_body())
        if kind in TERMINAL_EVENTS or (
            not self._responses and ('"usage":{' in event.data or '"usage": {' in event.data)
        ):
            data = _json(event.data)
            if isinstance(data, dict):
                answer = data.get("response") if kind in TERMINAL_EVENTS else data
                self.usage = answer_usage(answer) or self.usage
        return frame(event.data, kind)
