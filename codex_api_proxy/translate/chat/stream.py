"""Responses SSE -> `chat.completion.chunk` SSE: text and reasoning as they arrive, each tool call's
index, id and name in its first delta (events.py has put the calls one after another, named)."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import ProxyError
from ...core.sse import DONE, frame
from ..base import RequestContext, StreamTranslator
from .response import CALLS, StopCutter, chat_id, chat_usage, finish_reason, item_texts

log = logging.getLogger(__name__)


def _choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


@dataclass
class _Item:
    """One upstream output item as far as the client has seen it."""

    seen: dict[str, str] = field(default_factory=dict)  # channel -> text already taken from upstream
    tool_index: int | None = None  # position among the answer's calls, once announced
    summary_index: int | None = None  # reasoning: the summary part being streamed


class Stream(StreamTranslator):
    """Responses SSE -> `chat.completion.chunk` SSE, one stable id, `[DONE]` only after a real finish."""

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.id = chat_id({})
        self.created = int(time.time())
        self.started = False
        self.stopped = False  # a stop string ended the answer; the rest of upstream is discarded
        self.items: dict[int, _Item] = {}
        self.calls = 0
        self.spoke = False  # some content or refusal came (else the answer's content is "")
        self.reasoned = False  # some reasoning was sent (the next summary part starts a paragraph)
        self.cutter = StopCutter(list(ctx.state.stop))
        self.legacy = ctx.state.legacy_functions
        self.expose = ctx.options.expose_reasoning

    def _envelope(self, **fields: Any) -> bytes:
        return frame(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.ctx.model,
                "system_fingerprint": None,
                **fields,
            }
        )

    def _send(self, delta: dict[str, Any], finish: str | None = None) -> list[bytes]:
        """One chunk, after the role chunk when it is the first.

        The role chunk has no `content` key, so a tool-only answer accumulates to content null in the
        SDK, as in the non-streaming answer.
        """
        out = []
        if not self.started:
            self.started = True
            out.append(self._envelope(choices=[_choice({"role": "assistant"})]))
        if delta or finish:
            out.append(self._envelope(choices=[_choice(delta, finish)]))
        return out

    def _item(self, idx: Any) -> _Item:
        return self.items.setdefault(idx if isinstance(idx, int) else -1, _Item())

    def on_event(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        if kind == "response.created":
            response = data.get("response") or {}
            if not self.started:
                self.id = chat_id(response)
                self.created = int(response.get("created_at") or self.created)
            return self._send({})
        if kind in ("response.completed", "response.incomplete"):
            response = dict(data.get("response") or {})
            if kind == "response.incomplete":
                response["status"] = "incomplete"
            return self._finish(response)
        if self.stopped:
            return []
        idx = data.get("output_index")
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            return self._announce(idx, item) if item.get("type") in CALLS else []
        if kind == "response.output_text.delta":
            return self._emit(idx, "content", data.get("delta") or "")
        if kind == "response.refusal.delta":
            return self._emit(idx, "refusal", data.get("delta") or "")
        if kind == "response.function_call_arguments.delta":
            return self._emit(idx, "arguments", data.get("delta") or "")
        if kind == "response.custom_tool_call_input.delta":
            return self._emit(idx, "input", data.get("delta") or "")
        if kind == "response.reasoning_summary_text.delta":
            return self._reasoning(idx, data.get("summary_index", 0), data.get("delta") or "")
        if kind == "response.output_item.done":
            return self._complete(idx, data.get("item") or {})
        return []

    def _emit(self, idx: Any, channel: str, piece: str) -> list[bytes]:
        state = self._item(idx)
        if not piece or (channel in ("arguments", "input") and state.tool_index is None):
            return []  # arguments before their call was announced are sent at output_item.done
        state.seen[channel] = state.seen.get(channel, "") + piece
        if channel == "content":
            self.spoke = True
            out = self._send({"content": text}) if (text := self.cutter.feed(piece)) else []
            if self.cutter.hit:
                self.stopped = True
                out += self._send({}, "stop")
                if not self.ctx.state.include_usage:
                    # complete: end now rather than when the model stops (usage would need the end)
                    self.finished = True
                    out.append(DONE)
            return out
        if channel == "refusal":
            self.spoke = True
            return self._send({"refusal": piece})
        if self.legacy:
            return self._send({"function_call": {"arguments": piece}}) if state.tool_index == 0 else []
        if channel == "input":
            return self._send({"tool_calls": [{"index": state.tool_index, "custom": {"input": piece}}]})
        return self._send({"tool_calls": [{"index": state.tool_index, "function": {"arguments": piece}}]})

    def _reasoning(self, idx: Any, part: Any, piece: str) -> list[bytes]:
        if not self.expose or not piece:
            return []
        state = self._item(idx)
        new_part = state.summary_index != part
        if new_part and state.seen.get("reasoning"):
            state.seen["reasoning"] += "\n\n"  # as `item_texts` joins the item's summary parts
        state.summary_index = part
        return self._send_reasoning(state, piece, new_part)

    def _send_reasoning(self, state: _Item, piece: str, new_paragraph: bool) -> list[bytes]:
        """Summary parts (of one item or several) reach the client as paragraphs."""
        state.seen["reasoning"] = state.seen.get("reasoning", "") + piece
        if new_paragraph and self.reasoned:
            piece = "\n\n" + piece
        self.reasoned = True
        return self._send({"reasoning_content": piece})

    def _announce(self, idx: Any, call: dict[str, Any]) -> list[bytes]:
        """A function call's first delta: index, id, type and name, never repeated afterwards."""
        state = self._item(idx)
        if state.tool_index is not None:
            return []
        state.tool_index, self.calls = self.calls, self.calls + 1
        out = self._flush_text()
        name, call_id = call.get("name") or "", call.get("call_id") or f"call_{uuid.uuid4().hex[:24]}"
        name = self.ctx.state.tool_names.get(name, name)
        if call.get("type") == "custom_tool_call" and not self.legacy:
            head = {"index": state.tool_index, "id": call_id, "type": "custom"}
            return out + self._send({"tool_calls": [{**head, "custom": {"name": name, "input": ""}}]})
        if not self.legacy:
            head = {"index": state.tool_index, "id": call_id, "type": "function"}
            return out + self._send({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        if state.tool_index == 0:
            return out + self._send({"function_call": {"name": name, "arguments": ""}})
        log.warning("chat stream: dropped function call %r: the legacy function_call shape holds one", name)
        return out

    def _flush_text(self) -> list[bytes]:
        text = self.cutter.flush()
        return self._send({"content": text} if text else {})

    def _complete(self, idx: Any, item: dict[str, Any]) -> list[bytes]:
        """An item is done: send whatever of it the deltas did not carry (all of it, without deltas)."""
        out = self._announce(idx, item) if item.get("type") in CALLS else []
        state = self._item(idx)
        for channel, full in item_texts(item).items():
            seen = state.seen.get(channel, "")
            if (channel == "reasoning" and not self.expose) or full == seen:
                continue
            if not full.startswith(seen):
                log.warning("chat stream: upstream %s of output %s differs from its deltas", channel, idx)
            elif channel == "reasoning":
                out += self._send_reasoning(state, full[len(seen) :], new_paragraph=not seen)
            else:
                out += self._emit(idx, channel, full[len(seen) :])
        if item.get("type") == "message" and not self.stopped:
            out += self._flush_text()
        return out

    def _finish(self, response: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if not self.stopped:
            out += self._flush_text()
            if not self.spoke and not self.calls:  # an empty answer: content "", as from_response says
                out += self._send({"content": ""})
            out += self._send({}, finish_reason(response, self.calls > 0, self.legacy))
        if self.ctx.state.include_usage:
            out.append(self._envelope(choices=[], usage=chat_usage(response)))
        return [*out, DONE]

    def on_failure(self, error: ProxyError) -> list[bytes]:
        if self.stopped:  # the answer had ended at a stop string before upstream failed: it is complete
            return [DONE]
        return [frame(error.openai_body())]
