"""Every family's stream translator gives the same answer whatever legal shape the upstream stream has.

Another backend build (or another fake) may omit `event:` lines, use CRLF, send comments and
`[DONE]`, skip the `.added`/`.done` bookkeeping events, or fill `completed.output`. The client must
not notice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from codex_api_proxy.core.sse import frame, parse_all
from codex_api_proxy.translate import anthropic, chat, responses
from codex_api_proxy.translate.base import RequestContext

RID = "resp_0123456789abcdef"
REASONING = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Think."}],
             "encrypted_content": "enc_abc"}  # fmt: skip
MESSAGE = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": "Hello world", "annotations": []}]}  # fmt: skip
CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup", "arguments": '{"q":"x y"}',
        "status": "completed"}  # fmt: skip
USAGE = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
         "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13}  # fmt: skip


def canonical() -> list[dict[str, Any]]:
    resp = {
        "id": RID,
        "object": "response",
        "created_at": 1,
        "model": "gpt-5.5",
        "status": "in_progress",
        "output": [],
    }
    return [
        {"type": "response.created", "response": resp},
        {"type": "response.in_progress", "response": resp},
        {"type": "response.output_item.added", "output_index": 0, "item": {**REASONING, "summary": []}},
        {"type": "response.reasoning_summary_part.added", "output_index": 0, "item_id": "rs_1", "summary_index": 0},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "summary_index": 0, "delta": "Thi"},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "summary_index": 0, "delta": "nk."},
        {"type": "response.reasoning_summary_text.done", "output_index": 0, "item_id": "rs_1", "summary_index": 0, "text": "Think."},
        {"type": "response.output_item.done", "output_index": 0, "item": REASONING},
        {"type": "response.output_item.added", "output_index": 1, "item": {**MESSAGE, "content": [], "status": "in_progress"}},
        {"type": "response.content_part.added", "output_index": 1, "item_id": "msg_1", "content_index": 0, "part": {"type": "output_text", "text": ""}},
        {"type": "response.output_text.delta", "output_index": 1, "item_id": "msg_1", "content_index": 0, "delta": "Hello "},
        {"type": "response.output_text.delta", "output_index": 1, "item_id": "msg_1", "content_index": 0, "delta": "world"},
        {"type": "response.output_text.done", "output_index": 1, "item_id": "msg_1", "content_index": 0, "text": "Hello world"},
        {"type": "response.content_part.done", "output_index": 1, "item_id": "msg_1", "content_index": 0, "part": MESSAGE["content"][0]},
        {"type": "response.output_item.done", "output_index": 1, "item": MESSAGE},
        {"type": "response.output_item.added", "output_index": 2, "item": {**CALL, "arguments": "", "status": "in_progress"}},
        {"type": "response.function_call_arguments.delta", "output_index": 2, "item_id": "fc_1", "delta": '{"q":'},
        {"type": "response.function_call_arguments.delta", "output_index": 2, "item_id": "fc_1", "delta": '"x y"}'},
        {"type": "response.function_call_arguments.done", "output_index": 2, "item_id": "fc_1", "arguments": CALL["arguments"]},
        {"type": "response.output_item.done", "output_index": 2, "item": CALL},
        {"type": "response.completed", "response": {**resp, "status": "completed", "usage": USAGE}},
    ]  # fmt: skip


def encode(
    events: list[dict[str, Any]], *, event_lines: bool = True, crlf: bool = False, extras: bool = False
) -> bytes:
    out = b": hello\n\n" if extras else b""
    for e in events:
        out += frame(e, e["type"] if event_lines else None)
    if extras:
        out += b"data: [DONE]\n\n"
    return out.replace(b"\n", b"\r\n") if crlf else out


def drop(*kinds: str) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    return lambda events: [e for e in events if e["type"] not in kinds]


def full_completed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = events[-1]
    return [*events[:-1], {**last, "response": {**last["response"], "output": [REASONING, MESSAGE, CALL]}}]


VARIANTS: dict[str, tuple[Callable[[list[dict[str, Any]]], list[dict[str, Any]]], dict[str, bool]]] = {
    "canonical": (lambda e: e, {}),
    "no event lines": (lambda e: e, {"event_lines": False}),
    "crlf + comment + [DONE]": (lambda e: e, {"crlf": True, "extras": True}),
    "completed carries output": (full_completed, {}),
    "no bookkeeping events": (
        drop(
            "response.in_progress",
            "response.content_part.added",
            "response.content_part.done",
            "response.output_text.done",
            "response.function_call_arguments.done",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.done",
        ),
        {},
    ),
}


def run(stream: Callable[[bytes], list[bytes]], data: bytes) -> bytes:
    out: list[bytes] = []
    for i in range(0, len(data), 7):
        out += stream(data[i : i + 7])
    out += stream(b"")
    return b"".join(out)


DELTA_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "json",
    "signature_delta": "signature",
}


def anthropic_outcome(data: bytes) -> Any:
    ctx = RequestContext(model="claude-x", stream=True)
    anthropic.to_upstream({"model": "claude-x", "max_tokens": 100, "thinking": {"type": "adaptive"},
                           "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
                           "messages": [{"role": "user", "content": "hi"}]}, ctx)  # fmt: skip
    blocks: dict[int, dict[str, Any]] = {}
    stop = None
    for ev in parse_all(run(anthropic.Stream(ctx), data)):
        d = json.loads(ev.data)
        if d["type"] == "content_block_start":
            blocks[d["index"]] = {**d["content_block"], "json": ""}
        elif d["type"] == "content_block_delta":
            delta, block = d["delta"], blocks[d["index"]]
            name = DELTA_FIELDS[delta["type"]]
            block[name] = block.get(name, "") + delta["partial_json" if name == "json" else name]
        elif d["type"] == "message_delta":
            stop = d["delta"]["stop_reason"]
    return [
        (b["type"], b.get("text") or b.get("thinking") or json.loads(b["json"] or "{}"))
        for b in blocks.values()
    ], stop


def chat_outcome(data: bytes) -> Any:
    ctx = RequestContext(model="gpt-5.5", stream=True)
    chat.to_upstream(
        {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "stream": True}, ctx
    )
    text, calls, finish = "", {}, None
    for ev in parse_all(run(chat.Stream(ctx), data)):
        if ev.data == "[DONE]":
            continue
        choice = json.loads(ev.data)["choices"][0]
        text += choice["delta"].get("content") or ""
        for tc in choice["delta"].get("tool_calls") or []:
            call = calls.setdefault(tc["index"], {"id": tc.get("id"), "name": "", "arguments": ""})
            call["name"] += tc.get("function", {}).get("name") or ""
            call["arguments"] += tc.get("function", {}).get("arguments") or ""
        finish = choice.get("finish_reason") or finish
    return text, list(calls.values()), finish


def responses_outcome(data: bytes) -> Any:
    ctx = RequestContext(model="gpt-5.5", stream=True)
    events = [json.loads(ev.data) for ev in parse_all(run(responses.Stream(ctx), data))]
    final = events[-1]
    assert final["type"] == "response.completed"
    return [(i["type"], i.get("id")) for i in final["response"]["output"]], final["response"]["usage"]


@pytest.mark.parametrize(
    "outcome", [anthropic_outcome, chat_outcome, responses_outcome], ids=["anthropic", "chat", "responses"]
)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_answer_for_every_stream_shape(outcome: Callable[[bytes], Any], variant: str) -> None:
    change, options = VARIANTS[variant]
    expected = outcome(encode(canonical()))
    assert outcome(encode(change(canonical()), **options)) == expected


def test_the_canonical_answers_are_what_a_client_expects() -> None:
    blocks, stop = anthropic_outcome(encode(canonical()))
    assert blocks == [("thinking", "Think."), ("text", "Hello world"), ("tool_use", {"q": "x y"})]
    assert stop == "tool_use"
    assert chat_outcome(encode(canonical())) == (
        "Hello world",
        [{"id": "call_1", "name": "lookup", "arguments": '{"q":"x y"}'}],
        "tool_calls",
    )
    assert responses_outcome(encode(canonical())) == (
        [("reasoning", "rs_1"), ("message", "msg_1"), ("function_call", "fc_1")],
        USAGE,
    )
