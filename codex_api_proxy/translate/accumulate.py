"""Rebuild the complete Responses object from a stream.

The Codex backend (store=false) ends with `response.completed` whose `output` is empty: the finished
items only arrive as `response.output_item.done`. Every non-streaming answer and the Responses
stream's final event are built here, in `output_index` order, from the done items, falling back to
the deltas for an item whose `done` never came.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ERROR_EVENT, HEARTBEAT_EVENT, ProxyError, from_event
from ..core.sse import SSEParser
from .events import EventOrder


@dataclass
class _Partial:
    item: dict[str, Any]
    text: dict[int, list[str]] = field(default_factory=dict)  # content_index -> deltas
    arguments: list[str] = field(default_factory=list)
    summary: dict[int, list[str]] = field(default_factory=dict)  # summary_index -> deltas
    refusal: dict[int, list[str]] = field(default_factory=dict)  # content_index -> deltas

    def build(self) -> dict[str, Any]:
        item = dict(self.item)
        kind = item.get("type")
        if kind == "message" and (self.text or self.refusal):
            texts = {
                i: {"type": "output_text", "text": "".join(p), "annotations": []}
                for i, p in self.text.items()
            }
            refusals = {i: {"type": "refusal", "refusal": "".join(p)} for i, p in self.refusal.items()}
            item["content"] = [part for _, part in sorted({**texts, **refusals}.items())]
        elif kind in ("function_call", "custom_tool_call") and self.arguments:
            item["arguments" if kind == "function_call" else "input"] = "".join(self.arguments)
        elif kind == "reasoning" and self.summary:
            item["summary"] = [
                {"type": "summary_text", "text": "".join(parts)} for _, parts in sorted(self.summary.items())
            ]
        item["status"] = "incomplete"
        return item


class ResponseAccumulator:
    """Feed parsed Responses events in canonical order (events.py: every item event has its
    `output_index`); `response()` is the full object at any point."""

    def __init__(self) -> None:
        self.base: dict[str, Any] = {}
        self.done: dict[int, dict[str, Any]] = {}
        self.partial: dict[int, _Partial] = {}
        self.terminal: dict[str, Any] | None = None
        self.failure: ProxyError | None = None

    def feed(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        idx = data.get("output_index")
        if kind in ("response.created", "response.in_progress"):
            self.base = dict(data.get("response") or {})
        elif kind in ("response.completed", "response.incomplete"):
            self.terminal = dict(data.get("response") or {})
        elif kind in ("response.failed", "error", ERROR_EVENT):
            self.failure = from_event(data)
        elif not isinstance(idx, int):
            return
        elif kind == "response.output_item.done":
            self.done[idx] = data.get("item") or {}
        elif kind == "response.output_item.added":
            self.partial[idx] = _Partial(dict(data.get("item") or {}))
        elif idx in self.partial:
            part = self.partial[idx]
            if kind == "response.output_text.delta":
                part.text.setdefault(data.get("content_index", 0), []).append(data.get("delta", ""))
            elif kind == "response.refusal.delta":
                part.refusal.setdefault(data.get("content_index", 0), []).append(data.get("delta", ""))
            elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
                part.arguments.append(data.get("delta", ""))
            elif kind == "response.reasoning_summary_text.delta":
                part.summary.setdefault(data.get("summary_index", 0), []).append(data.get("delta", ""))

    def output(self) -> list[dict[str, Any]]:
        indices = sorted(set(self.done) | set(self.partial))
        return [self.done[i] if i in self.done else self.partial[i].build() for i in indices]

    def response(self) -> dict[str, Any]:
        """The final object: terminal event's fields, with `output` rebuilt when upstream left it empty."""
        resp = {**self.base, **(self.terminal or {})}
        if not resp.get("output"):
            resp["output"] = self.output()
        resp.setdefault("object", "response")
        return resp


class StreamFolder:
    """An upstream stream, fed as it arrives, folded into the final Responses object.

    `feed` returns that object once a terminal event came (the rest may be ignored), else None;
    `finish` at the stream's end returns it or raises. Both raise ProxyError for a failure the stream
    reported, an event that is not JSON, or an end before a terminal event: a truncated answer is
    never passed off as a complete one."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._order = EventOrder()
        self._acc = ResponseAccumulator()

    def feed(self, chunk: bytes) -> dict[str, Any] | None:
        return self._events(self._parser.feed(chunk))

    def finish(self) -> dict[str, Any]:
        final = self._events(self._parser.flush())
        if final is None:
            raise ProxyError(502, "upstream stream ended before the response was complete")
        return final

    def _events(self, events: list[Any]) -> dict[str, Any] | None:
        acc = self._acc
        for event in events:
            if not event.data or event.data == "[DONE]":
                continue
            try:
                data = json.loads(event.data)
            except ValueError:
                raise ProxyError(502, "upstream sent an event that is not JSON") from None
            if isinstance(data, dict) and data.get("type") != HEARTBEAT_EVENT:
                for ordered in self._order.feed(data):
                    acc.feed(ordered)
                    if acc.failure:
                        raise acc.failure
                    if acc.terminal is not None:
                        return acc.response()
        return None


def aggregate(body: bytes) -> dict[str, Any]:
    """A whole buffered upstream stream -> the final Responses object, or the failure it reported."""
    folder = StreamFolder()
    return folder.feed(body) or folder.finish()


def usage_of(response: dict[str, Any]) -> dict[str, int]:
    """Flat usage numbers (0 when absent): input, cached, output, reasoning, total."""
    usage = response.get("usage") or {}
    details_in = usage.get("input_tokens_details") or {}
    details_out = usage.get("output_tokens_details") or {}
    inp = int(usage.get("input_tokens") or 0)
    out = int(usage.get("output_tokens") or 0)
    return {
        "input": inp,
        "cached": int(details_in.get("cached_tokens") or 0),
        "output": out,
        "reasoning": int(details_out.get("reasoning_tokens") or 0),
        "total": int(usage.get("total_tokens") or inp + out),
    }
