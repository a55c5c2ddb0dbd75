"""API-key mode: the OpenAI API already speaks the client's dialect, so its stream passes unchanged.

Only the relay's own events are rewritten: a heartbeat becomes an SSE comment and a transport failure
becomes the dialect's error event, so a cut stream never ends as if it were complete.
"""

from __future__ import annotations

import json

from ..errors import ERROR_EVENT, HEARTBEAT_EVENT, ProxyError, from_event
from ..sse import SSEEvent, SSEParser, comment, frame
from .responses import error_event


class PassthroughStream:
    """mitmproxy stream callable for OpenAI-dialect streams (Chat Completions or Responses)."""

    def __init__(self, responses_dialect: bool) -> None:
        self._parser = SSEParser()
        self._responses = responses_dialect
        self.failure: ProxyError | None = None
        self.upstream_ended = False  # never cut short: the upstream's own end ends the client's stream

    @property
    def finished(self) -> bool:
        return self.failure is not None

    def __call__(self, chunk: bytes) -> list[bytes]:
        events = self._parser.feed(chunk) if chunk else self._parser.flush()
        return [self._reframe(event) for event in events if self.failure is None]

    def _reframe(self, event: SSEEvent) -> bytes:
        kind = event.event
        if kind in (HEARTBEAT_EVENT, ERROR_EVENT):
            if kind == HEARTBEAT_EVENT:
                return comment()
            self.failure = from_event(json.loads(event.data))
            return error_event(self.failure) if self._responses else frame(self.failure.openai_body())
        return frame(event.data, kind)
