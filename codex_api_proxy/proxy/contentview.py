"""mitmproxy content views: server-sent event streams read as text; the request a flow sent upstream.

A streamed answer is hundreds of `event:`/`data:` lines of JSON deltas; mitmweb's raw view shows them
as they came. This view reads them the way a client does (core/sse.py's parser) and puts first what the
stream says: the text, the reasoning summaries and the tool calls, assembled from the deltas of any of
the three API families (Anthropic Messages, Chat Completions, Responses); then one line per event.

A translated flow shows the client's request (proxy/inspector.py); the request that went upstream is in
its comment, where mitmweb folds the lines together: the `Upstream` view shows it as written.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import contentviews

from ..core.sse import parse_all
from .inspector import UPSTREAM_MARK

MAX_EVENT_CHARS = 2000  # per event line; the raw view has the rest


def _deltas(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(section, text) pieces one event adds: "text", "reasoning" or "tool calls"."""
    kind = data.get("type")
    if kind == "content_block_delta":  # Anthropic Messages
        delta = data.get("delta") or {}
        pieces = {"text_delta": ("text", "text"), "thinking_delta": ("reasoning", "thinking"),
                  "input_json_delta": ("tool calls", "partial_json")}  # fmt: skip
        section, field = pieces.get(delta.get("type"), ("", ""))
        return [(section, str(delta.get(field) or ""))] if section else []
    if kind == "content_block_start":
        block = data.get("content_block") or {}
        if block.get("type") in ("tool_use", "server_tool_use"):
            return [("tool calls", f"\n{block.get('name')}: ")]
        return []
    if kind in ("response.output_text.delta", "response.reasoning_summary_text.delta"):  # Responses
        return [
            ("text" if kind == "response.output_text.delta" else "reasoning", str(data.get("delta") or ""))
        ]
    if kind == "response.function_call_arguments.delta":
        return [("tool calls", str(data.get("delta") or ""))]
    if kind == "response.output_item.added" and (data.get("item") or {}).get("type") == "function_call":
        return [("tool calls", f"\n{data['item'].get('name')}: ")]
    out: list[tuple[str, str]] = []
    for choice in data.get("choices") or []:  # Chat Completions chunks
        delta = (choice.get("delta") or {}) if isinstance(choice, dict) else {}
        if delta.get("content"):
            out.append(("text", str(delta["content"])))
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            if function.get("name"):
                out.append(("tool calls", f"\n{function['name']}: "))
            out.append(("tool calls", str(function.get("arguments") or "")))
    return out


def assemble(body: bytes) -> tuple[dict[str, str], list[str]]:
    """The stream's sections assembled, and one line per event."""
    sections: dict[str, str] = {"text": "", "reasoning": "", "tool calls": ""}
    lines = []
    for event in parse_all(body):
        lines.append(f"{event.event or 'message'}: {event.data[:MAX_EVENT_CHARS]}")
        try:
            data = json.loads(event.data)
        except ValueError:
            continue
        if isinstance(data, dict):
            for section, piece in _deltas(data):
                sections[section] += piece
    return sections, lines


class ServerSentEvents(contentviews.Contentview):
    """`text/event-stream` bodies: the assembled answer, then the events."""

    @property
    def name(self) -> str:
        return "SSE"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        sections, lines = assemble(data)
        out = [f"{title.capitalize()}:\n{text.strip()}\n" for title, text in sections.items() if text.strip()]
        return "\n".join([*(out or ["(no text in this stream)\n"]), f"{len(lines)} events:", *lines])

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        media = (metadata.content_type or "").split(";", 1)[0].strip().lower()
        return 2.0 if media == "text/event-stream" else -1


class Upstream(contentviews.Contentview):
    """A translated flow's request as it went upstream (chosen by hand: the client's body comes first)."""

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        comment = getattr(metadata.flow, "comment", "") or ""
        if metadata.http_message is None or UPSTREAM_MARK not in comment:
            raise ValueError("this flow was not translated: what the client sent went upstream")
        return UPSTREAM_MARK + comment.split(UPSTREAM_MARK, 1)[1]

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        return -1
