"""The aggregated Responses object -> one `chat.completion`, and the pieces the stream shares with it
(stop strings, ids, usage, finish reasons, what an item says per channel)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..accumulate import usage_of
from ..base import RequestContext


@dataclass
class StopCutter:
    """Cuts the answer at the first stop string, holding back a tail that may begin one."""

    stops: list[str]
    held: str = ""
    hit: bool = False

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        if not self.stops:
            return text
        text = self.held + text
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit, self.held = True, ""
            return text[:cut]
        longest = max(len(s) for s in self.stops)
        keep = next(
            (
                k
                for k in range(min(len(text), longest - 1), 0, -1)
                if any(s.startswith(text[-k:]) for s in self.stops)
            ),
            0,
        )
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def chat_id(response: dict[str, Any]) -> str:
    """`chatcmpl-` + the upstream response id's suffix, so the two can be matched in logs."""
    rid = response.get("id")
    return "chatcmpl-" + (
        rid.removeprefix("resp_") if isinstance(rid, str) and rid else uuid.uuid4().hex[:24]
    )


def chat_usage(response: dict[str, Any]) -> dict[str, Any]:
    u = usage_of(response)
    return {
        "prompt_tokens": u["input"],
        "completion_tokens": u["output"],
        "total_tokens": u["total"],
        "prompt_tokens_details": {"cached_tokens": u["cached"]},
        "completion_tokens_details": {"reasoning_tokens": u["reasoning"]},
    }


def finish_reason(response: dict[str, Any], called: bool, legacy: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    if called:
        return "function_call" if legacy else "tool_calls"
    return "stop"


def item_texts(item: dict[str, Any]) -> dict[str, str]:
    """What a finished output item says, per chat channel (summary parts as paragraphs)."""
    kind = item.get("type")
    if kind == "message":
        parts = item.get("content") or []
        return {
            "content": "".join(p.get("text") or "" for p in parts if p.get("type") == "output_text"),
            "refusal": "".join(p.get("refusal") or "" for p in parts if p.get("type") == "refusal"),
        }
    if kind == "function_call":
        return {"arguments": item.get("arguments") or ""}
    if kind == "custom_tool_call":
        return {"input": item.get("input") or ""}
    if kind == "reasoning":
        return {"reasoning": "\n\n".join(s.get("text") or "" for s in item.get("summary") or [])}
    return {}


CALLS = ("function_call", "custom_tool_call")


def _tool_call(item: dict[str, Any], names: dict[str, str], said: dict[str, str]) -> dict[str, Any]:
    """A finished call item -> a Chat tool call (a custom one carries `custom: {name, input}`)."""
    name = names.get(item.get("name") or "", item.get("name") or "")
    if item.get("type") == "custom_tool_call":
        return {"id": item.get("call_id"), "type": "custom", "custom": {"name": name, "input": said["input"]}}
    return {
        "id": item.get("call_id"),
        "type": "function",
        "function": {"name": name, "arguments": said["arguments"]},
    }


def from_response(response: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The aggregated Responses object -> one `chat.completion`."""
    legacy = ctx.state.legacy_functions
    names = ctx.state.tool_names
    cutter = StopCutter(list(ctx.state.stop))
    text: list[str] = []
    refusal: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        said = item_texts(item)
        kind = item.get("type")
        if kind == "message":
            text += [cutter.feed(said["content"]), cutter.flush()]
            refusal.append(said["refusal"])
        elif kind in CALLS:
            calls.append(_tool_call(item, names, said))
        elif kind == "reasoning" and said["reasoning"]:
            reasoning.append(said["reasoning"])
        if cutter.hit:
            break
    content, refused = "".join(text), "".join(refusal)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content or (None if calls or refused else ""),
        "refusal": refused or None,
    }
    if legacy and calls:
        message["function_call"] = calls[0].get("function") or calls[0]["custom"]
    elif calls:
        message["tool_calls"] = calls
    if ctx.options.expose_reasoning and reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    finish = "stop" if cutter.hit else finish_reason(response, bool(calls), legacy)
    return {
        "id": chat_id(response),
        "object": "chat.completion",
        "created": int(response.get("created_at") or time.time()),
        "model": ctx.model or response.get("model") or "",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": chat_usage(response),
        "system_fingerprint": None,
    }
