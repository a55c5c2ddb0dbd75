"""How a scripted Turn becomes the backend's Responses stream: the events of each output item, the
usage numbers, and the opt-in stream shapes other backend builds send (STREAM_SHAPES).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from .script import (
    CustomToolCall,
    FunctionCall,
    OutputSpec,
    Reasoning,
    Recorded,
    Text,
    Turn,
    WebSearch,
    hex_id,
    split_text,
)

# Opt-in stream shapes other backend builds send (Turn.shapes); the default stream has none of them.
STREAM_SHAPES = frozenset({
    "names_at_done",  # function/custom calls announced with an empty name; the name only in output_item.done
    "interleaved",  # parallel calls: all announced, their deltas alternating, finished in reverse order
    "no_output_index",  # no event carries output_index (items known by item_id only)
    "no_sequence_number",  # no event carries sequence_number
    "text_at_done",  # a message item only as its output_item.done (no added, no part, no deltas)
})  # fmt: skip


def event_item_id(event: dict[str, Any]) -> Any:
    item = event.get("item")
    return item.get("id") if isinstance(item, dict) else event.get("item_id")


def interleave(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls' events as parallel calls really come: all announced first, their argument deltas
    alternating, the last one finished first."""
    calls = [
        e["item"]["id"]
        for e in events
        if e["type"] == "response.output_item.added"
        and e["item"].get("type") in ("function_call", "custom_tool_call")
    ]
    if len(calls) < 2:
        return events
    own = [e for e in events if event_item_id(e) in calls]
    first = events.index(own[0])
    rest = [e for e in events if event_item_id(e) not in calls]
    added = [e for e in own if e["type"] == "response.output_item.added"]
    done = [e for e in own if e["type"] == "response.output_item.done"][::-1]
    middle = {
        c: [e for e in own if event_item_id(e) == c and e not in added and e not in done] for c in calls
    }
    mixed: list[dict[str, Any]] = []
    while any(middle.values()):
        for c in calls:
            if middle[c]:
                mixed.append(middle[c].pop(0))
    return rest[:first] + added + mixed + done + rest[first:]


def shaped(events: list[dict[str, Any]], shapes: frozenset[str]) -> list[dict[str, Any]]:
    """The stream numbered and, for the Turn's opt-in STREAM_SHAPES, reshaped (see STREAM_SHAPES)."""
    unknown = shapes - STREAM_SHAPES
    if unknown:
        raise ValueError(f"unknown stream shapes: {sorted(unknown)}")
    if "interleaved" in shapes:
        events = interleave(events)
    if "text_at_done" in shapes:
        messages = {e["item"]["id"] for e in events if e["type"] == "response.output_item.added"
                    and e["item"].get("type") == "message"}  # fmt: skip
        events = [
            e for e in events if event_item_id(e) not in messages or e["type"] == "response.output_item.done"
        ]
    if "names_at_done" in shapes:
        events = [
            {**e, "item": {**e["item"], "name": ""}}
            if e["type"] == "response.output_item.added"
            and e["item"].get("type") in ("function_call", "custom_tool_call")
            else e
            for e in events
        ]
    out = [{"type": e["type"], "sequence_number": n, **e} for n, e in enumerate(events)]
    for event in out:
        if "no_output_index" in shapes:
            event.pop("output_index", None)
        if "no_sequence_number" in shapes:
            event.pop("sequence_number", None)
    return out


def message_events(spec: Text, index: int) -> list[dict[str, Any]]:
    item_id = hex_id("msg")
    at = {"item_id": item_id, "output_index": index, "content_index": 0}
    part = {"type": "output_text", "text": spec.text, "annotations": list(spec.annotations)}
    item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
        *(
            {"type": "response.output_text.delta", **at, "delta": d, "logprobs": []}
            for d in split_text(spec.text, spec.chunks)
        ),
        *(
            {"type": "response.output_text.annotation.added", **at, "annotation_index": n, "annotation": a}
            for n, a in enumerate(spec.annotations)
        ),
        {"type": "response.output_text.done", **at, "text": spec.text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part},
        {
            "type": "response.output_item.done",
            "output_index": index,
            "item": {**item, "status": "completed", "content": [part]},
        },
    ]


def web_search_events(spec: WebSearch, index: int, with_sources: bool) -> list[dict[str, Any]]:
    """A hosted web search as the Responses API streams it: the item added, in_progress, searching,
    completed, the item done with its `action` (sources only when the request included them)."""
    item_id = hex_id("ws")
    action: dict[str, Any] = {"type": "search", "query": spec.query}
    if with_sources:
        action["sources"] = [{"type": "url", "url": url} for url in spec.sources]
    at = {"output_index": index, "item_id": item_id}
    return [
        {"type": "response.output_item.added", "output_index": index,
         "item": {"type": "web_search_call", "id": item_id, "status": "in_progress"}},
        *({"type": f"response.web_search_call.{step}", **at} for step in ("in_progress", "searching", "completed")),
        {"type": "response.output_item.done", "output_index": index,
         "item": {"type": "web_search_call", "id": item_id, "status": "completed", "action": action}},
    ]  # fmt: skip


def reasoning_events(spec: Reasoning, index: int, enc: str | None) -> list[dict[str, Any]]:
    item_id = hex_id("rs")
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {"type": "reasoning", "id": item_id, "summary": []},
        }
    ]
    for s, summary in enumerate(spec.summary):
        at = {"item_id": item_id, "output_index": index, "summary_index": s}
        part = {"type": "summary_text", "text": summary}
        events += [
            {"type": "response.reasoning_summary_part.added", **at, "part": {**part, "text": ""}},
            *(
                {"type": "response.reasoning_summary_text.delta", **at, "delta": d}
                for d in split_text(summary, 2)
            ),
            {"type": "response.reasoning_summary_text.done", **at, "text": summary},
            {"type": "response.reasoning_summary_part.done", **at, "part": part},
        ]
    summary_parts = [{"type": "summary_text", "text": s} for s in spec.summary]
    item = {"type": "reasoning", "id": item_id, "summary": summary_parts, "encrypted_content": enc}
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


def call_events(spec: FunctionCall | CustomToolCall, index: int) -> list[dict[str, Any]]:
    custom = isinstance(spec, CustomToolCall)
    kind, field_name, payload = (
        ("custom_tool_call", "input", spec.input)
        if custom
        else ("function_call", "arguments", spec.arguments)
    )
    event = "response.custom_tool_call_input" if custom else "response.function_call_arguments"
    item_id = hex_id("ctc" if custom else "fc")
    item = {
        "type": kind,
        "id": item_id,
        "call_id": spec.call_id or hex_id("call"),
        "name": spec.name,
        field_name: "",
        "status": "in_progress",
    }
    at = {"item_id": item_id, "output_index": index}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        *({"type": f"{event}.delta", **at, "delta": d} for d in split_text(payload, spec.chunks)),
        {"type": f"{event}.done", **at, field_name: payload},
        {
            "type": "response.output_item.done",
            "output_index": index,
            "item": {**item, field_name: payload, "status": "completed"},
        },
    ]


def default_usage(rec: Recorded, output: list[OutputSpec]) -> dict[str, Any]:
    """Plausible numbers: ~4 bytes per token of request, ~4 characters per token of output."""
    chars, reasoning_tokens = 0, 0
    for spec in output:
        if isinstance(spec, Reasoning):
            reasoning_tokens += len("".join(spec.summary)) // 4 + 16
        elif isinstance(spec, WebSearch):
            chars += len(spec.query)
        else:
            chars += len(
                spec.text
                if isinstance(spec, Text)
                else spec.arguments
                if isinstance(spec, FunctionCall)
                else spec.input
            )
    inp = max(1, len(rec.raw) // 4)
    out = max(1, chars // 4) + reasoning_tokens
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": inp + out,
    }


class ResponsesStream:
    """A Turn as the backend's Responses stream, issuing the reasoning items' encrypted content (which
    a later request may replay). A part of FakeBackend, which holds that record."""

    encrypted_content_needs_include: bool
    issued_encrypted_content: set[str]
    _lock: threading.Lock

    def _events(self, turn: Turn, rec: Recorded, full_output: bool = False) -> list[dict[str, Any]]:
        """The Responses stream of a Turn; `full_output` = like the OpenAI API, the terminal event's
        response lists the finished items (the Codex backend sends `output: []`)."""
        body = rec.body
        resp_id, created = hex_id("resp"), int(time.time())
        send_enc = not self.encrypted_content_needs_include or "reasoning.encrypted_content" in (
            body.get("include") or []
        )

        def response(status: str, **extra: Any) -> dict[str, Any]:
            return {"id": resp_id, "object": "response", "created_at": created, "model": body["model"],
                    "status": status, "output": [], "usage": None, **extra}  # fmt: skip

        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": response("in_progress")},
            {"type": "response.in_progress", "response": response("in_progress")},
        ]
        for index, spec in enumerate(turn.output):
            if isinstance(spec, WebSearch):
                events += web_search_events(
                    spec, index, "web_search_call.action.sources" in body.get("include", [])
                )
                continue
            events += self._item_events(spec, index, send_enc)
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"] if full_output else []
        usage = turn.usage if turn.usage is not None else default_usage(rec, turn.output)
        if turn.error_event is not None:
            events.append({"type": "error", "error": turn.error_event})
        if turn.fail is not None:
            events.append(
                {"type": "response.failed", "response": response("failed", error=turn.fail, output=done)}
            )
        elif turn.incomplete is not None:
            details = {"reason": turn.incomplete}
            events.append(
                {
                    "type": "response.incomplete",
                    "response": response("incomplete", incomplete_details=details, usage=usage, output=done),
                }
            )
        elif turn.error_event is None:
            events.append(
                {"type": "response.completed", "response": response("completed", usage=usage, output=done)}
            )
        return shaped(events, turn.shapes)

    def _item_events(self, spec: OutputSpec, index: int, send_enc: bool) -> list[dict[str, Any]]:
        if isinstance(spec, Text):
            return message_events(spec, index)
        if isinstance(spec, Reasoning):
            enc = spec.encrypted_content or "enc_" + secrets.token_hex(16)
            if send_enc:
                with self._lock:
                    self.issued_encrypted_content.add(enc)
            return reasoning_events(spec, index, enc if send_enc else None)
        return call_events(spec, index)
