"""Codex Responses SSE -> Anthropic Messages SSE, one block open at a time, indices 0, 1, 2... in order.

Stop sequences are applied as the text streams: only a suffix that could start a stop sequence is
held back, and a match ends the message with stop_reason "stop_sequence" at once (output_tokens is
then the count of the text sent).

A web search (anthropic_web_search) streams as its server_tool_use block at once; its result block
needs the titles that only the answer's citations carry, so the events after a search are held until
that answer's item is done (or the next search, or the end), then the result block and the held
events go out in order: the search's answer arrives whole rather than token by token.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ...core import tokens
from ...core.errors import ProxyError
from ...core.sse import frame
from ..base import RequestContext, StreamTranslator
from .response import anthropic_usage, first_stop, message_id, stop_reason, summary_text, turn_done
from .signature import encode_signature
from .web_search import (
    action_urls,
    citation,
    message_citations,
    result_block,
    search_query,
    url_citations,
    use_block,
    with_searches,
)

log = logging.getLogger(__name__)


class _StopCutter:
    """Stop-sequence search over streamed text, holding back only what could still become a match."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """(text safe to send now, the stop sequence that matched or None)."""
        buf = self.held + text
        hit = first_stop(buf, self.stops)
        if hit:
            self.held = ""
            return buf[: hit[0]], hit[1]
        keep = max((_overlap(buf, seq) for seq in self.stops), default=0)
        self.held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], None

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _overlap(text: str, seq: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `seq`."""
    for size in range(min(len(text), len(seq) - 1), 0, -1):
        if text.endswith(seq[:size]):
            return size
    return 0


@dataclass
class _Block:
    key: tuple[Any, ...]  # ("reasoning", output_index) | ("text", output_index, content_index) | ("call", oi)
    index: int
    cutter: _StopCutter | None = None
    part: int | None = None  # reasoning: summary_index of the last thinking delta
    sent: str = ""  # tool_use: arguments sent so far
    texts: list[str] = field(default_factory=list)  # text: what upstream said, for citations' cited_text
    cited: int = 0  # text: url_citation annotations already sent as citations


@dataclass
class _Search:
    """A web search whose result block waits for the answer that cites its pages (for their titles):
    the events after the search are held until that answer is done, then replayed."""

    tool_id: str
    urls: list[str]
    citations: list[dict[str, Any]] = field(default_factory=list)
    held: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Stream(StreamTranslator):
    """Responses SSE -> Anthropic SSE: one block open at a time, indices 0, 1, 2... in order."""

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.names: dict[str, str] = ctx.state.tool_names
        self.thinking = ctx.state.thinking
        self.stops: list[str] = list(ctx.state.stop_sequences)
        self.upstream_model: str = ctx.state.upstream_model
        self.started = False
        self.block: _Block | None = None
        self.closed: set[tuple[Any, ...]] = set()
        self.count = 0
        self.tool_used = False
        self.refusal = False
        self.text_sent: list[str] = []  # only kept with stop sequences, to count output tokens at a match
        self.search: _Search | None = None
        self.searches = 0

    # events ---------------------------------------------------------------------------------

    def on_event(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        if self.finished:  # ended at a stop sequence; the driver may still flush one last event at EOF
            return []
        if kind in ("response.created", "response.in_progress"):
            return self._start(data.get("response") or {})
        out = self._start({})
        if self.search is not None:
            return out + self._hold(kind, data)
        oi = data.get("output_index", 0)
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                out += self._open_call(oi, item)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            self.refusal = self.refusal or kind == "response.refusal.delta"
            out += self._text(("text", oi, data.get("content_index", 0)), data.get("delta") or "")
        elif kind == "response.reasoning_summary_text.delta":
            out += self._thinking(oi, data.get("summary_index", 0), data.get("delta") or "")
        elif kind == "response.function_call_arguments.delta":
            out += self._arguments(("call", oi), data.get("delta") or "")
        elif kind == "response.output_text.annotation.added":
            out += self._cite(("text", oi, data.get("content_index", 0)), [data.get("annotation") or {}])
        elif kind == "response.output_item.done":
            out += self._item_done(oi, data.get("item") or {})
        elif kind in ("response.completed", "response.incomplete"):
            out += self._finish(data.get("response") or {})
        return out

    def on_failure(self, error: ProxyError) -> list[bytes]:
        return [self._event("error", error.anthropic_body())]

    def on_heartbeat(self) -> list[bytes]:
        return [self._event("ping", {})]

    # blocks ---------------------------------------------------------------------------------

    @staticmethod
    def _event(kind: str, payload: dict[str, Any]) -> bytes:
        return frame({"type": kind, **payload}, event=kind)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._event("content_block_delta", {"index": self._block().index, "delta": delta})

    def _start(self, response: dict[str, Any]) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message = {
            "id": message_id(response.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self.ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(response),
        }
        return [self._event("message_start", {"message": message})]

    def _block(self) -> _Block:
        """The open block (callers have just checked or opened it)."""
        assert self.block is not None
        return self.block

    def _current(self, key: tuple[Any, ...]) -> bool:
        return self.block is not None and self.block.key == key

    def _open(self, key: tuple[Any, ...], block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block = _Block(
            key, self.count, _StopCutter(self.stops) if key[0] == "text" and self.stops else None
        )
        self.count += 1
        return [*out, self._event("content_block_start", {"index": self.block.index, "content_block": block})]

    def _close(self) -> list[bytes]:
        block = self.block
        if block is None:
            return []
        out = []
        rest = block.cutter.flush() if block.cutter else ""
        if rest:
            self.text_sent.append(rest)
            out.append(self._delta({"type": "text_delta", "text": rest}))
        out.append(self._event("content_block_stop", {"index": block.index}))
        self.closed.add(block.key)
        self.block = None
        return out

    def _text(self, key: tuple[Any, ...], text: str) -> list[bytes]:
        out: list[bytes] = []
        if not self._current(key):
            if not text or key in self.closed:
                return []
            out += self._open(key, {"type": "text", "text": ""})
        self._block().texts.append(text)
        cutter = self._block().cutter
        send, hit = cutter.feed(text) if cutter else (text, None)
        if send:
            if self.stops:
                self.text_sent.append(send)
            out.append(self._delta({"type": "text_delta", "text": send}))
        if hit is not None:
            out += self._stop_sequence(hit)
        return out

    def _thinking(self, oi: int, part: int, text: str) -> list[bytes]:
        key = ("reasoning", oi)
        if not self.thinking or not text:
            return []
        out: list[bytes] = []
        if not self._current(key):
            if key in self.closed:
                return []
            out += self._open(key, {"type": "thinking", "thinking": "", "signature": ""})
        block = self._block()
        if block.part is not None and part != block.part:
            text = "\n\n" + text
        block.part = part
        return [*out, self._delta({"type": "thinking_delta", "thinking": text})]

    def _open_call(self, oi: int, item: dict[str, Any]) -> list[bytes]:
        key = ("call", oi)
        if self._current(key) or key in self.closed:
            return []
        name = item.get("name") or ""
        block = {
            "type": "tool_use",
            "id": item.get("call_id") or item.get("id") or "",
            "name": self.names.get(name, name),
        }
        self.tool_used = True
        return self._open(key, {**block, "input": {}}) + self._arguments(key, item.get("arguments") or "")

    def _arguments(self, key: tuple[Any, ...], piece: str) -> list[bytes]:
        if not piece or not self._current(key):
            return []  # a call whose block is not open: its done item carries the whole arguments
        self._block().sent += piece
        return [self._delta({"type": "input_json_delta", "partial_json": piece})]

    def _item_done(self, oi: int, item: dict[str, Any]) -> list[bytes]:
        kind = item.get("type")
        if kind == "function_call":
            key = ("call", oi)
            out = [] if self._current(key) else self._open_call(oi, item)  # a call seen only when done
            if not self._current(key):
                log.error("function call %s finished after its block was closed", item.get("call_id"))
                return out
            final, sent = item.get("arguments") or "", self._block().sent
            if final.startswith(sent):
                out += self._arguments(key, final[len(sent) :])
            else:
                log.error("streamed arguments of %s differ from the final ones", item.get("call_id"))
            return out + self._close()
        if kind == "message":
            out: list[bytes] = []
            for ci, part in enumerate(item.get("content") or []):
                key = ("text", oi, ci)
                if not self._current(key) and key not in self.closed:
                    self.refusal = self.refusal or part.get("type") == "refusal"
                    out += self._text(key, part.get("text") or part.get("refusal") or "")
                    if self.finished:
                        return out
                if self._current(key):
                    out += self._cite(key, url_citations(part)[self._block().cited :]) + self._close()
            return out
        if kind == "reasoning":
            return self._reasoning_done(oi, item)
        if kind == "web_search_call":
            return self._search_done(oi, item)
        return []

    # web search (see anthropic_web_search) ----------------------------------------------------

    def _cite(self, key: tuple[Any, ...], annotations: list[dict[str, Any]]) -> list[bytes]:
        if not self._current(key):
            return []
        block, out = self._block(), []
        for annotation in annotations:
            if annotation.get("type") == "url_citation" and isinstance(annotation.get("url"), str):
                block.cited += 1
                cite = citation(annotation, "".join(block.texts))
                out.append(self._delta({"type": "citations_delta", "citation": cite}))
        return out

    def _search_done(self, oi: int, item: dict[str, Any]) -> list[bytes]:
        query = search_query(item)
        if query is None:
            return []  # a page visit with no search before it: nothing Anthropic-shaped to show
        self.searches += 1
        block = use_block(item, query)
        out = self._open(("search", oi), {**block, "input": {}})
        out.append(self._delta({"type": "input_json_delta", "partial_json": json.dumps(block["input"])}))
        out += self._close()
        self.search = _Search(block["id"], action_urls(item))
        return out

    def _hold(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        search = self._pending()
        item = data.get("item") or {}
        if kind == "response.output_item.done" and item.get("type") == "web_search_call":
            if search_query(item) is None:
                search.urls += action_urls(item)
                return []
            return self._release() + self._search_done(data.get("output_index", 0), item)
        if kind.startswith("response.web_search_call."):
            return []
        search.held.append((kind, data))
        if kind == "response.output_text.annotation.added":
            search.citations += url_citations({"annotations": [data.get("annotation")]})
        elif kind == "response.output_item.done" and item.get("type") == "message":
            search.citations += message_citations(item)
            return self._release()
        elif kind in ("response.completed", "response.incomplete"):
            return self._release()
        return []

    def _pending(self) -> _Search:
        assert self.search is not None
        return self.search

    def _release(self) -> list[bytes]:
        """The search's result block, then the events held behind it."""
        search, self.search = self._pending(), None
        out = self._open(
            ("search_result", search.tool_id), result_block(search.tool_id, search.urls, search.citations)
        )
        out += self._close()
        for kind, data in search.held:
            out += self.on_event(kind, data)
        return out

    def _reasoning_done(self, oi: int, item: dict[str, Any]) -> list[bytes]:
        key = ("reasoning", oi)
        if not self.thinking or (key in self.closed and not self._current(key)):
            return []
        enc = item.get("encrypted_content")
        out: list[bytes] = []
        if not self._current(key):
            text = summary_text(item)
            if not text and not enc:
                return []
            out += self._open(key, {"type": "thinking", "thinking": "", "signature": ""})
            if text:
                out.append(self._delta({"type": "thinking_delta", "thinking": text}))
        if enc:
            signature = encode_signature(item.get("id") or "", enc, self.upstream_model)
            out.append(self._delta({"type": "signature_delta", "signature": signature}))
        return out + self._close()

    # endings --------------------------------------------------------------------------------

    def _stop_sequence(self, seq: str) -> list[bytes]:
        out = self._close()
        usage = {"output_tokens": tokens.count_text("".join(self.text_sent))}
        out.append(
            self._event(
                "message_delta",
                {"delta": {"stop_reason": "stop_sequence", "stop_sequence": seq}, "usage": usage},
            )
        )
        out.append(self._event("message_stop", {}))
        self.finished = True  # the rest of the upstream answer is not the client's
        return out

    def _finish(self, response: dict[str, Any]) -> list[bytes]:
        turn_done(response, self.ctx)  # (the driver records the turn's usage for the flow)
        out = self._close()
        delta = {"stop_reason": stop_reason(response, self.tool_used, self.refusal), "stop_sequence": None}
        usage = with_searches(anthropic_usage(response), self.searches)
        out.append(self._event("message_delta", {"delta": delta, "usage": usage}))
        out.append(self._event("message_stop", {}))
        return out
