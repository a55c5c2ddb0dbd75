"""Every family's translation is a function of the upstream stream's meaning (issue 19).

Hypothesis builds legal Responses event sequences (text, reasoning with summaries, several function
and custom calls, web searches; items interleaved; names only at `done`, text only at `done`,
`output_index` / `sequence_number` present or not), feeds them to each family's stream translator
split at arbitrary byte points, and has the official SDK read the result: its own stream
accumulator (anthropic `messages.stream`, openai `chat.completions.stream`, `responses.stream`) must
build exactly what the same SDK builds from the non-streamed translation of the same events, and no
call may lose its name or arguments. The SDKs read the translated bytes through an httpx transport
(the SDKs' own httpx2) that answers with them: the SDK's SSE parser and accumulator run for real.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic as anthropic_sdk
import httpx2
import openai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_api_proxy.core.sse import frame
from codex_api_proxy.translate import anthropic, chat, responses
from codex_api_proxy.translate.accumulate import aggregate
from codex_api_proxy.translate.base import RequestContext, StreamTranslator

NAMES = ["lookup", "fetch_page", "Bash"]
RID = "resp_0123456789abcdef0123"
USAGE = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 9,
         "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 29}  # fmt: skip
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Upstream:
    events: list[dict[str, Any]]
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (call_id, name, arguments or input)
    text: str = ""


words = st.text(alphabet='abc xyzé😀\n{}"', min_size=1, max_size=12)


def _pieces(draw: st.DrawFn, value: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(value) - 1)), max_size=3)))
    bounds = [0, *[c for c in cuts if c < len(value)], len(value)]
    return [value[a:b] for a, b in itertools.pairwise(bounds) if value[a:b]]


@st.composite
def item_events(draw: st.DrawFn, n: int, custom: bool, search: bool) -> tuple[list[dict[str, Any]], Any]:
    """One output item's events (without output_index yet) and what it means."""
    kinds = ["text", "reasoning", "call"] + (["custom"] if custom else []) + (["search"] if search else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        iid, value = f"msg_{n}", draw(words)
        part = {"type": "output_text", "text": value, "annotations": []}
        item = {"type": "message", "id": iid, "role": "assistant", "status": "completed", "content": [part]}
        done = {"type": "response.output_item.done", "item": item}
        shape = draw(st.sampled_from(["full", "done only", "no added", "deltas only"]))
        if shape == "done only":  # text only at done (the Codex CLI's own fixtures)
            return [done], ("text", value)
        at = {"item_id": iid, "content_index": 0}
        events = []
        if shape == "full":
            added = {**item, "status": "in_progress", "content": []}
            events.append({"type": "response.output_item.added", "item": added})
            if draw(st.booleans()):
                events.append({"type": "response.content_part.added", **at, "part": {**part, "text": ""}})
        events += [{"type": "response.output_text.delta", **at, "delta": d} for d in _pieces(draw, value)]
        return (events if shape == "deltas only" else [*events, done]), ("text", value)
    if kind == "reasoning":
        iid = f"rs_{n}"
        summaries = draw(st.lists(words, max_size=2))
        item = {"type": "reasoning", "id": iid, "encrypted_content": f"enc_{n}",
                "summary": [{"type": "summary_text", "text": s} for s in summaries]}  # fmt: skip
        events = [{"type": "response.output_item.added", "item": {**item, "summary": []}}]
        for s, value in enumerate(summaries):
            at = {"item_id": iid, "summary_index": s}
            events += [
                {"type": "response.reasoning_summary_text.delta", **at, "delta": d}
                for d in _pieces(draw, value)
            ]
        return [*events, {"type": "response.output_item.done", "item": item}], ("reasoning", summaries)
    if kind == "search":
        iid = f"ws_{n}"
        item = {"type": "web_search_call", "id": iid, "status": "completed",
                "action": {"type": "search", "query": draw(words)}}  # fmt: skip
        return [
            {"type": "response.output_item.added", "item": {"type": "web_search_call", "id": iid, "status": "in_progress"}},
            {"type": "response.web_search_call.completed", "item_id": iid},
            {"type": "response.output_item.done", "item": item},
        ], ("search", None)  # fmt: skip
    name = draw(st.sampled_from(NAMES))
    call_id = f"call_{n}"
    if kind == "call":
        iid, key, delta_kind = f"fc_{n}", "arguments", "response.function_call_arguments.delta"
        value = json.dumps({"q": draw(words)}, ensure_ascii=False)
        item = {"type": "function_call", "id": iid, "call_id": call_id, "name": name, "arguments": value}
    else:
        iid, key, delta_kind = f"ctc_{n}", "input", "response.custom_tool_call_input.delta"
        value = draw(words)
        item = {"type": "custom_tool_call", "id": iid, "call_id": call_id, "name": name, "input": value}
    added = {**item, key: "", "status": "in_progress"}
    if draw(st.booleans()):  # the name only at done
        added["name"] = ""
    events = [{"type": "response.output_item.added", "item": added}]
    events += [{"type": delta_kind, "item_id": iid, "delta": d} for d in _pieces(draw, value)]
    return [*events, {"type": "response.output_item.done", "item": {**item, "status": "completed"}}], (
        "call",
        (call_id, name, value),
    )


def _item_id(event: dict[str, Any]) -> str:
    return event["item"]["id"] if "item" in event else event["item_id"]


@st.composite
def upstream_streams(draw: st.DrawFn, custom: bool = True, search: bool = True) -> Upstream:
    count = draw(st.integers(1, 5))
    per_item = [draw(item_events(n, custom, search)) for n in range(count)]
    queues = [list(events) for events, _ in per_item]
    body: list[dict[str, Any]] = []
    interleave = draw(st.booleans())
    while any(queues):
        live = [q for q in queues if q]
        queue = live[draw(st.integers(0, len(live) - 1))] if interleave else live[0]
        body.append(queue.pop(0))

    def item_id(event: dict[str, Any]) -> str:
        return event["item"]["id"] if "item" in event else event["item_id"]

    # output_index: the item's position by first appearance, as the backend numbers them (or none)
    order: dict[str, int] = {}
    with_index = draw(st.booleans())
    for event in body:
        order.setdefault(_item_id(event), len(order))
        if with_index:
            event["output_index"] = order[_item_id(event)]
    meanings = sorted(((order[_item_id(events[-1])], m) for events, m in per_item), key=lambda x: x[0])
    resp = {"id": RID, "object": "response", "created_at": 1, "model": "gpt-5.5", "status": "in_progress",
            "output": []}  # fmt: skip
    events = [
        {"type": "response.created", "response": resp},
        *body,
        {"type": "response.completed", "response": {**resp, "status": "completed", "usage": USAGE}},
    ]
    if draw(st.booleans()):
        events = [{**e, "sequence_number": n} for n, e in enumerate(events)]
    calls = [m[1] for _, m in meanings if m[0] == "call"]
    text = "".join(m[1] for _, m in meanings if m[0] == "text")
    return Upstream(events, calls, text)


@st.composite
def split_bytes(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if data[a:b]]


def translate(stream: StreamTranslator, chunks: list[bytes]) -> bytes:
    out: list[bytes] = []
    for chunk in chunks:
        out += stream(chunk)
    out += stream(b"")
    return b"".join(out)


class Answers:
    """An httpx transport answering every request with the bytes set last: the SDK reads them."""

    def __init__(self) -> None:
        self.body, self.content_type = b"", "application/json"

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=self.body, headers={"content-type": self.content_type})

    def set(self, body: bytes, stream: bool) -> None:
        self.body, self.content_type = body, "text/event-stream" if stream else "application/json"


ANSWERS = Answers()
HTTP = httpx2.Client(transport=httpx2.MockTransport(ANSWERS))
CLAUDE = anthropic_sdk.Anthropic(base_url="http://sdk.test", api_key="x", http_client=HTTP, max_retries=0)
OPENAI = openai.OpenAI(base_url="http://sdk.test/v1", api_key="x", http_client=HTTP, max_retries=0)


def both(
    up: Upstream, chunks: list[bytes], make: Callable[[], tuple[RequestContext, Any]]
) -> tuple[bytes, bytes]:
    """(the streamed translation, the non-streamed one) of the same upstream bytes."""
    ctx, module = make()
    streamed = translate(module.Stream(ctx), chunks)
    ctx, module = make()
    whole = json.dumps(module.from_response(aggregate(b"".join(chunks)), ctx)).encode()
    return streamed, whole


def encode(up: Upstream) -> bytes:
    return b"".join(frame(e, e["type"]) for e in up.events)


ANTHROPIC_TOOLS = [{"name": n, "input_schema": {"type": "object"}} for n in NAMES]


def _anthropic_ctx() -> tuple[RequestContext, Any]:
    ctx = RequestContext(model="claude-x", stream=True)
    anthropic.to_upstream({"model": "claude-x", "max_tokens": 100, "thinking": {"type": "adaptive"},
                           "tools": ANTHROPIC_TOOLS, "messages": [{"role": "user", "content": "hi"}]}, ctx)  # fmt: skip
    return ctx, anthropic


@given(data=st.data())
@PROPERTY
def test_anthropic_stream_equals_message(data: st.DataObject) -> None:
    up = data.draw(upstream_streams(custom=False))
    chunks = data.draw(split_bytes(encode(up)))
    streamed, whole = both(up, chunks, _anthropic_ctx)
    request = {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    ANSWERS.set(streamed, stream=True)
    with CLAUDE.messages.stream(**request) as stream:
        from_stream = stream.get_final_message()
    ANSWERS.set(whole, stream=False)
    message = CLAUDE.messages.create(**request)
    assert from_stream.model_dump(exclude_none=True) == message.model_dump(exclude_none=True)
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert calls == [(c, n, json.loads(a)) for c, n, a in up.calls]
    assert "".join(b.text for b in message.content if b.type == "text") == up.text


def _chat_ctx() -> tuple[RequestContext, Any]:
    ctx = RequestContext(model="gpt-5.5", stream=True)
    chat.to_upstream({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                      "stream_options": {"include_usage": True}}, ctx)  # fmt: skip
    return ctx, chat


CHAT_TOOLS: list[Any] = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in NAMES
]


@given(data=st.data())
@PROPERTY
def test_chat_stream_equals_completion(data: st.DataObject) -> None:
    # custom calls: the openai SDK's chat stream helper cannot build them (test_field_fidelity covers them)
    up = data.draw(upstream_streams(custom=False))
    chunks = data.draw(split_bytes(encode(up)))
    streamed, whole = both(up, chunks, _chat_ctx)
    request = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "tools": CHAT_TOOLS}
    ANSWERS.set(streamed, stream=True)
    with OPENAI.chat.completions.stream(**request) as stream:
        from_stream = stream.get_final_completion()
    ANSWERS.set(whole, stream=False)
    completion = OPENAI.chat.completions.create(**request)
    # what the SDK's stream accumulator adds of its own: `parsed`, `parsed_arguments`, each call's `index`
    sdk_own = {"index": True, "function": {"parsed_arguments"}}
    skip = {
        "created": True,
        "choices": {0: {"message": {"tool_calls": {"__all__": sdk_own}, "parsed": True}}},
    }
    assert from_stream.model_dump(exclude_none=True, exclude=skip) == completion.model_dump(
        exclude_none=True, exclude={"created"}
    )
    message = completion.choices[0].message
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == up.calls
    assert (message.content or "") == up.text


def _responses_ctx() -> tuple[RequestContext, Any]:
    ctx = RequestContext(model="gpt-5.5", stream=True)
    responses.to_upstream({"model": "gpt-5.5", "input": "hi", "store": False}, ctx)
    return ctx, responses


@given(data=st.data())
@PROPERTY
def test_responses_stream_equals_response(data: st.DataObject) -> None:
    up = data.draw(upstream_streams())
    chunks = data.draw(split_bytes(encode(up)))
    streamed, whole = both(up, chunks, _responses_ctx)
    request = {"model": "gpt-5.5", "input": "hi", "store": False}
    ANSWERS.set(streamed, stream=True)
    with OPENAI.responses.stream(**request) as stream:
        from_stream = stream.get_final_response()
    ANSWERS.set(whole, stream=False)
    response = OPENAI.responses.create(**request)
    # `output_text`: the proxy adds it to the JSON for clients without the SDK's property of that name
    assert from_stream.model_dump(exclude_none=True) == response.model_dump(
        exclude_none=True, exclude={"output_text"}
    )
    assert from_stream.output_text == response.output_text
    calls = [(i.call_id, i.name, getattr(i, "arguments", None) or getattr(i, "input", ""))
             for i in response.output if i.type in ("function_call", "custom_tool_call")]  # fmt: skip
    assert calls == up.calls
    assert response.output_text == up.text


def test_the_codex_cli_fixture_shape_reads_the_same_in_every_sdk() -> None:
    """The Codex CLI's own tests' streams: no response.created, items only as output_item.done (calls
    with a call_id and no id), a terminal event with nothing but id, usage and an empty output."""
    usage = {"input_tokens": 0, "input_tokens_details": None, "output_tokens": 0, "output_tokens_details": None,
             "total_tokens": 0}  # fmt: skip
    message = {
        "type": "message",
        "role": "assistant",
        "id": "msg1",
        "content": [{"type": "output_text", "text": "hi"}],
    }
    events = [
        {"type": "response.output_item.done", "item": message},
        {"type": "response.output_item.done",
         "item": {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"a":1}'}},
        {"type": "response.output_item.done",
         "item": {"type": "function_call", "call_id": "c2", "name": "Bash", "arguments": '{"b":2}'}},
        {"type": "response.completed", "response": {"id": "resp1", "usage": usage, "output": []}},
    ]  # fmt: skip
    up = Upstream(events, [("c1", "lookup", '{"a":1}'), ("c2", "Bash", '{"b":2}')], "hi")
    chunks = [encode(up)]
    streamed, whole = both(up, chunks, _anthropic_ctx)
    request: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    ANSWERS.set(streamed, stream=True)
    with CLAUDE.messages.stream(**request) as stream:
        from_stream = stream.get_final_message()
    ANSWERS.set(whole, stream=False)
    # the message id: a stream that never named its response cannot start with the final one's
    assert from_stream.model_dump(exclude={"id"}) == CLAUDE.messages.create(**request).model_dump(
        exclude={"id"}
    )
    streamed, whole = both(up, chunks, _chat_ctx)
    request = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "tools": CHAT_TOOLS}
    ANSWERS.set(streamed, stream=True)
    with OPENAI.chat.completions.stream(**request) as chat_stream:
        message_streamed = chat_stream.get_final_completion().choices[0].message
    assert [
        (c.id, c.function.name, c.function.arguments) for c in message_streamed.tool_calls or []
    ] == up.calls
    assert message_streamed.content == "hi"
    streamed, whole = both(up, chunks, _responses_ctx)
    request = {"model": "gpt-5.5", "input": "hi", "store": False}
    ANSWERS.set(streamed, stream=True)
    with OPENAI.responses.stream(**request) as responses_stream:
        final = responses_stream.get_final_response()
    ANSWERS.set(whole, stream=False)
    response = OPENAI.responses.create(**request)
    assert final.output_text == response.output_text == "hi"
    assert [i.model_dump(exclude_none=True) for i in final.output] == [
        i.model_dump(exclude_none=True) for i in response.output
    ]
