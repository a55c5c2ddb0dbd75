"""The OpenAI API's shapes for the fake's API-key mode: its error bodies, and a scripted Turn as a
Chat Completions answer (`chat.completion`) or stream (`chat.completion.chunk`s).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from .script import CustomToolCall, FunctionCall, OutputSpec, Text, Turn, hex_id, split_text

_API_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}


_API_FAILURE_STATUS = {"context_length_exceeded": 400, "invalid_prompt": 400, "rate_limit_exceeded": 429}


def api_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind = _API_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def api_failure(turn: Turn) -> tuple[int, dict[str, Any]] | None:
    """How the OpenAI API reports a Turn's failure: (status, error body), None when it succeeds."""
    err = turn.error_event if turn.error_event is not None else turn.fail
    if err is None:
        return None
    status = _API_FAILURE_STATUS.get(err.get("code") or "", 500)
    return status, api_error(status, str(err.get("message") or "The server had an error"), err.get("code"))


def _chat_calls(output: list[OutputSpec]) -> list[dict[str, Any]]:
    """The Turn's tool calls as a chat message's `tool_calls` (reasoning and text are not calls)."""
    calls: list[dict[str, Any]] = []
    for spec in output:
        if isinstance(spec, FunctionCall):
            function = {"name": spec.name, "arguments": spec.arguments}
            calls.append({"id": spec.call_id or hex_id("call"), "type": "function", "function": function})
        elif isinstance(spec, CustomToolCall):
            custom = {"name": spec.name, "input": spec.input}
            calls.append({"id": spec.call_id or hex_id("call"), "type": "custom", "custom": custom})
    return calls


def _chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Responses usage numbers under the Chat Completions names."""
    inp, out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        "prompt_tokens": inp,
        "completion_tokens": out,
        "total_tokens": usage.get("total_tokens", inp + out),
        "prompt_tokens_details": {
            "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
        },
        "completion_tokens_details": {
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)
        },
    }


def _chat_finish(turn: Turn, has_calls: bool) -> str:
    if turn.incomplete is not None:
        return "content_filter" if turn.incomplete == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def _chat_base(body: dict[str, Any], obj: str) -> dict[str, Any]:
    chat_id, now = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    return {"id": chat_id, "object": obj, "created": now, "model": body["model"], "service_tier": "default",
            "system_fingerprint": "fp_fake"}  # fmt: skip


def chat_completion(turn: Turn, body: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    calls = _chat_calls(turn.output)
    content = "".join(s.text for s in turn.output if isinstance(s, Text))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content or None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _chat_finish(turn, bool(calls)),
    }
    return {**_chat_base(body, "chat.completion"), "choices": [choice], "usage": _chat_usage(usage)}


def chat_chunks(turn: Turn, body: dict[str, Any], usage: dict[str, Any]) -> list[Any]:
    """The `data:` payloads of a chat stream: a role chunk, content and tool-call deltas (id, type and
    name only in a call's first delta), the finish chunk, the usage chunk when asked for, `[DONE]`;
    a failure ends it with an `{"error": ...}` chunk instead."""
    base = _chat_base(body, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    calls = _chat_calls(turn.output)
    index = 0
    for spec in turn.output:
        if isinstance(spec, Text):
            chunks += [chunk({"content": piece}) for piece in split_text(spec.text, spec.chunks)]
        elif isinstance(spec, FunctionCall):
            head = {**calls[index], "function": {"name": spec.name, "arguments": ""}}
            chunks.append(chunk({"tool_calls": [{"index": index, **head}]}))
            chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                       for piece in split_text(spec.arguments, spec.chunks)]  # fmt: skip
            index += 1
        elif isinstance(spec, CustomToolCall):
            chunks.append(chunk({"tool_calls": [{"index": index, **calls[index]}]}))
            index += 1
    failure = api_failure(turn)
    if failure:
        return [*chunks, failure[1]]
    chunks.append(chunk({}, _chat_finish(turn, bool(calls))))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": _chat_usage(usage)})
    return [*chunks, "[DONE]"]
