"""Chat Completions family: request translation, streaming and non-streaming answers.

Streams are fed realistic Codex backend SSE (`response.completed.output` is [] as upstream sends it)
split at awkward places, and read back with the official openai SDK where it can run offline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from codex_api_proxy.core.errors import HEARTBEAT_EVENT, ProxyError
from codex_api_proxy.core.sse import frame, parse_all
from codex_api_proxy.translate.accumulate import aggregate
from codex_api_proxy.translate.base import RequestContext, RequestState, TranslatorOptions
from codex_api_proxy.translate.cache_key import prompt_cache_key
from codex_api_proxy.translate.chat import Stream, from_response, to_upstream

try:  # the transport library the installed openai SDK is built on
    import httpx2 as http
except ImportError:  # openai releases before httpx2
    import httpx as http

MODEL = "gpt-5.5"
USAGE = {
    "input_tokens": 120,
    "input_tokens_details": {"cached_tokens": 64},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 150,
}
CHAT_USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 64},
    "completion_tokens_details": {"reasoning_tokens": 12},
}


def request(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **fields}


def translate(body: dict[str, Any], **options: Any) -> tuple[dict[str, Any], RequestContext]:
    ctx = RequestContext(model=MODEL, options=TranslatorOptions(**options))
    return to_upstream(body, ctx), ctx


def dev(*texts: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": t} for t in texts],
    }


def user(*parts: Any) -> dict[str, Any]:
    content = [{"type": "input_text", "text": p} if isinstance(p, str) else p for p in parts]
    return {"type": "message", "role": "user", "content": content}


def said(*texts: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": t} for t in texts],
    }


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, out: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": out}


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


PNG = "data:image/png;base64,iVBORw0KGgo="

# ---------------------------------------------------------------------------------------------------
# to_upstream: messages

MESSAGES = [
    ("system-string", [{"role": "system", "content": "Be brief."}], [dev("Be brief.")]),
    (
        "system-and-developer-in-place",
        [
            {"role": "system", "content": "A"},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": "B"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": "C"},
        ],
        [dev("A"), user("hi"), dev("B"), said("hello"), dev("C")],
    ),
    (
        "system-text-parts",
        [{"role": "system", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}],
        [dev("one", "two")],
    ),
    ("user-string", [{"role": "user", "content": "hello"}], [user("hello")]),
    (
        "user-text-and-images",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "input_image", "file_id": "file-1", "detail": "low"},
                ],
            }
        ],
        [
            user(
                "what is this?",
                {"type": "input_image", "image_url": PNG, "detail": "high"},
                {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
                {"type": "input_image", "file_id": "file-1", "detail": "low"},
            )
        ],
    ),
    (
        "user-files",
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                    },
                    {"type": "file", "file": {"file_id": "file-2"}},
                ],
            }
        ],
        [
            user(
                {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                {"type": "input_file", "file_id": "file-2"},
            )
        ],
    ),
    ("assistant-string", [{"role": "assistant", "content": "sure"}], [said("sure")]),
    (
        "assistant-parts-with-refusal",
        [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}],
            }
        ],
        [said("a", "no")],
    ),
    (
        "assistant-refusal-field",
        [{"role": "assistant", "content": None, "refusal": "I can't help with that."}],
        [said("I can't help with that.")],
    ),
    (
        "assistant-text-and-tool-calls",
        [
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    tool_call("call_a", "get_weather", '{"city":"Paris"}'),
                    tool_call("call_b", "get_time", '{"tz":"CET"}'),
                ],
            }
        ],
        [
            said("Checking both."),
            call("call_a", "get_weather", '{"city":"Paris"}'),
            call("call_b", "get_time", '{"tz":"CET"}'),
        ],
    ),
    (
        "assistant-null-content-only-calls",
        [{"role": "assistant", "content": None, "tool_calls": [tool_call("call_a", "ls", "{}")]}],
        [call("call_a", "ls", "{}")],
    ),
    (
        "assistant-object-arguments",
        [{"role": "assistant", "content": "", "tool_calls": [tool_call("call_a", "ls", {"path": "/"})]}],
        [call("call_a", "ls", '{"path": "/"}')],
    ),
    (
        "tool-string",
        [{"role": "tool", "tool_call_id": "call_a", "content": "22C"}],
        [output("call_a", "22C")],
    ),
    ("tool-null", [{"role": "tool", "tool_call_id": "call_a", "content": None}], [output("call_a", "")]),
    (
        "tool-text-parts-joined",
        [
            {
                "role": "tool",
                "tool_call_id": "call_a",
                "content": [
                    {"type": "text", "text": "Exit code 1"},
                    {"type": "text", "text": "no such file"},
                ],
            }
        ],
        [output("call_a", "Exit code 1\nno such file")],
    ),
    (
        "tool-with-image-as-output-list",
        [
            {
                "role": "tool",
                "tool_call_id": "call_a",
                "content": [
                    {"type": "text", "text": "screenshot:"},
                    {"type": "image_url", "image_url": {"url": PNG}},
                ],
            }
        ],
        [
            output(
                "call_a",
                [
                    {"type": "input_text", "text": "screenshot:"},
                    {"type": "input_image", "image_url": PNG, "detail": "auto"},
                ],
            )
        ],
    ),
    (
        "legacy-function-call-and-result",
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "get_weather", "arguments": "{}"},
            },
            {"role": "function", "name": "get_weather", "content": "sunny"},
        ],
        [user("weather?"), call("call_legacy_1", "get_weather", "{}"), output("call_legacy_1", "sunny")],
    ),
]


@pytest.mark.parametrize(("messages", "expected"), [m[1:] for m in MESSAGES], ids=[m[0] for m in MESSAGES])
def test_messages_become_input_items_in_order(messages, expected):
    out, _ = translate(request(*messages))
    assert out["input"] == expected


def test_fixed_fields_and_nothing_the_backend_refuses():
    body = request(
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        max_tokens=100,
        max_completion_tokens=100,
        temperature=0.2,
        top_p=0.9,
        stop=["x"],
        n=1,
        seed=7,
        logprobs=False,
        top_logprobs=0,
        frequency_penalty=0.5,
        presence_penalty=0.5,
        logit_bias={"50256": -100},
        user="u-1",
        safety_identifier="s-1",
        metadata={"k": "v"},
        store=True,
        stream=True,
        stream_options={"include_usage": True},
        prediction={"type": "content", "content": "x"},
    )
    out, _ = translate(body)
    assert set(out) == {"model", "input", "stream", "store", "prompt_cache_key"}
    assert (out["model"], out["stream"], out["store"]) == (MODEL, True, False)


# ---------------------------------------------------------------------------------------------------
# to_upstream: request fields

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_UP = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather by city",
    "parameters": WEATHER["function"]["parameters"],
    "strict": False,
}

PARAMS = [
    (
        "tools-strict-defaults-false",
        {"tools": [WEATHER]},
        {"tools": [WEATHER_UP], "parallel_tool_calls": True},
    ),
    (
        "tools-strict-honoured",
        {"tools": [{"type": "function", "function": {**WEATHER["function"], "strict": True}}]},
        {"tools": [{**WEATHER_UP, "strict": True}]},
    ),
    (
        "tool-without-parameters",
        {"tools": [{"type": "function", "function": {"name": "now"}}]},
        {
            "tools": [
                {
                    "type": "function",
                    "name": "now",
                    "parameters": {"type": "object", "properties": {}},
                    "strict": False,
                }
            ]
        },
    ),
    ("tool-choice-none", {"tools": [WEATHER], "tool_choice": "none"}, {"tool_choice": "none"}),
    ("tool-choice-auto", {"tools": [WEATHER], "tool_choice": "auto"}, {"tool_choice": "auto"}),
    ("tool-choice-required", {"tools": [WEATHER], "tool_choice": "required"}, {"tool_choice": "required"}),
    (
        "tool-choice-named",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"tool_choice": {"type": "function", "name": "get_weather"}},
    ),
    (
        "tool-choice-allowed-tools",
        {
            "tools": [WEATHER],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
        },
        {
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_weather"}],
            }
        },
    ),
    ("parallel-off", {"tools": [WEATHER], "parallel_tool_calls": False}, {"parallel_tool_calls": False}),
    (
        "legacy-functions",
        {"functions": [WEATHER["function"]], "function_call": {"name": "get_weather"}},
        {
            "tools": [WEATHER_UP],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False,
        },
    ),
    (
        "legacy-function-call-auto",
        {"functions": [WEATHER["function"]], "function_call": "auto"},
        {"tool_choice": "auto"},
    ),
    (
        "json-object",
        {"response_format": {"type": "json_object"}},
        {"text": {"format": {"type": "json_object"}}},
    ),
    (
        "json-schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": {"type": "object"}, "strict": True},
            }
        },
        {
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "city",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            }
        },
    ),
    (
        "reasoning-effort",
        {"reasoning_effort": "high"},
        {"reasoning": {"effort": "high", "summary": "auto"}, "include": ["reasoning.encrypted_content"]},
    ),
    (
        "verbosity-with-format",
        {"verbosity": "low", "response_format": {"type": "json_object"}},
        {"text": {"format": {"type": "json_object"}, "verbosity": "low"}},
    ),
    ("service-tier", {"service_tier": "priority"}, {"service_tier": "priority"}),
    ("prompt-cache-key-from-body", {"prompt_cache_key": "conv-42"}, {"prompt_cache_key": "conv-42"}),
]


@pytest.mark.parametrize(("fields", "expected"), [p[1:] for p in PARAMS], ids=[p[0] for p in PARAMS])
def test_request_fields_are_mapped(fields, expected):
    out, _ = translate(request({"role": "user", "content": "hi"}, **fields))
    assert {k: out.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    "fields",
    [{}, {"response_format": {"type": "text"}}, {"tool_choice": "auto", "parallel_tool_calls": True}],
    ids=["plain", "text-format", "tool-choice-without-tools"],
)
def test_defaults_send_no_optional_fields(fields):
    out, _ = translate(request({"role": "user", "content": "hi"}, **fields))
    assert not {"tools", "tool_choice", "parallel_tool_calls", "text", "reasoning", "include"} & set(out)
    assert "instructions" not in out


@pytest.mark.parametrize("stream", [True, False])
def test_context_learns_model_and_stream_mode(stream):
    ctx = RequestContext(options=TranslatorOptions(expose_reasoning=False))
    to_upstream(request({"role": "user", "content": "hi"}, stream=stream), ctx)
    assert (ctx.model, ctx.stream) == (MODEL, stream)


def test_expose_reasoning_asks_for_summaries():
    out, _ = translate(request({"role": "user", "content": "hi"}), expose_reasoning=True)
    assert out["reasoning"] == {"summary": "auto"}
    assert out["include"] == ["reasoning.encrypted_content"]


@pytest.mark.parametrize(
    ("fields", "options"),
    [
        ({}, {"stop": [], "include_usage": False, "legacy_functions": False}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": ["a", "", "b"]}, {"stop": ["a", "b"]}),
        ({"stream_options": {"include_usage": True}}, {"include_usage": True}),
        ({"functions": [WEATHER["function"]]}, {"legacy_functions": True}),
        ({"functions": [WEATHER["function"]], "tools": [WEATHER]}, {"legacy_functions": False}),
    ],
)
def test_options_recorded_for_the_answer(fields, options):
    _, ctx = translate(request({"role": "user", "content": "hi"}, **fields))
    assert {k: getattr(ctx.state, k) for k in options} == options


BAD = [
    ("missing-model", {"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("blank-model", {"model": " ", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ("missing-messages", {"model": MODEL}, "messages"),
    ("empty-messages", {"model": MODEL, "messages": []}, "messages"),
    ("messages-not-list", {"model": MODEL, "messages": {"role": "user"}}, "messages"),
    ("message-not-object", request("hi"), "messages[0]"),
    ("unknown-role", request({"role": "robot", "content": "hi"}), "messages[0].role"),
    ("tool-without-call-id", request({"role": "tool", "content": "22C"}), "messages[0].tool_call_id"),
    ("function-without-call", request({"role": "function", "name": "f", "content": "x"}), "messages[0]"),
    (
        "input-audio",
        request(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "input_audio", "input_audio": {"data": "AAA"}},
                ],
            }
        ),
        "messages[0].content[1]",
    ),
    ("unknown-part", request({"role": "user", "content": [{"type": "video"}]}), "messages[0].content[0]"),
    (
        "image-without-url",
        request({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}),
        "messages[0].content[0].image_url",
    ),
    (
        "image-in-system",
        request({"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}),
        "messages[0].content",
    ),
    (
        "tool-call-without-id",
        request({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}),
        "messages[0].tool_calls[0].id",
    ),
    ("n-above-one", request({"role": "user", "content": "hi"}, n=2), "n"),
    ("logprobs", request({"role": "user", "content": "hi"}, logprobs=True), "logprobs"),
    ("audio-output", request({"role": "user", "content": "hi"}, modalities=["text", "audio"]), "modalities"),
    ("stop-not-strings", request({"role": "user", "content": "hi"}, stop=[1]), "stop"),
    (
        "unknown-tool-type",
        request({"role": "user", "content": "hi"}, tools=[{"type": "computer", "computer": {"name": "x"}}]),
        "tools[0].type",
    ),
    (
        "tool-without-name",
        request({"role": "user", "content": "hi"}, tools=[{"type": "function", "function": {}}]),
        "tools[0].function.name",
    ),
    (
        "bad-tool-choice",
        request({"role": "user", "content": "hi"}, tools=[WEATHER], tool_choice="sometimes"),
        "tool_choice",
    ),
    (
        "bad-response-format",
        request({"role": "user", "content": "hi"}, response_format={"type": "xml"}),
        "response_format",
    ),
    (
        "json-schema-without-schema",
        request(
            {"role": "user", "content": "hi"},
            response_format={"type": "json_schema", "json_schema": {"name": "x"}},
        ),
        "response_format",
    ),
]


@pytest.mark.parametrize(("body", "param"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_invalid_requests_are_clear_400s(body, param):
    with pytest.raises(ProxyError) as info:
        translate(body)
    err = info.value
    assert (err.status, err.param) == (400, param)
    assert err.openai_body()["error"]["type"] == "invalid_request_error"
    assert err.message


# ---------------------------------------------------------------------------------------------------
# prompt_cache_key


@pytest.mark.parametrize("header", ["session_id", "session-id", "x-session-id"])
def test_cache_key_is_the_client_session_header(header):
    ctx = RequestContext(model=MODEL, headers={header: "sess-1"})
    assert to_upstream(request({"role": "user", "content": "hi"}), ctx)["prompt_cache_key"] == "sess-1"


def test_cache_key_is_stable_across_turns_and_differs_between_conversations():
    first = [{"role": "system", "content": "S"}, {"role": "user", "content": "plan a trip"}]
    later = [*first, {"role": "assistant", "content": "Where to?"}, {"role": "user", "content": "Rome"}]
    key = translate(request(*first))[0]["prompt_cache_key"]
    assert translate(request(*later))[0]["prompt_cache_key"] == key
    assert translate(request(first[0], {"role": "user", "content": "other"}))[0]["prompt_cache_key"] != key
    assert translate(request({"role": "system", "content": "T"}, first[1]))[0]["prompt_cache_key"] != key


def test_cache_key_helper_takes_responses_input_and_instructions():
    items = [dev("S"), user("U")]
    assert prompt_cache_key({}, items) == prompt_cache_key({}, [*items, said("A"), user("V")])
    assert prompt_cache_key({}, items, "I") != prompt_cache_key({}, items)


def test_cache_key_of_long_texts_is_the_hash_of_their_joined_text():
    # hashed a slice at a time (a pasted file must not hold the GIL), the key is still the one it
    # always was: the backend's prompt cache of a conversation survives a proxy upgrade
    long = "é😀 x" * 300_000  # longer than a slice, multi-byte characters on the cuts
    items = [{"role": "system", "content": [{"text": long}, {"image": "-"}, {"text": "b"}]}, user("U", long)]
    seed = "\x00".join(("I", long + "b", "U" + long))
    assert prompt_cache_key({}, items, "I") == "cxp-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------------
# Upstream streams


class Upstream:
    """Codex backend SSE as it really arrives: items only in output_item.done, completed.output = []."""

    def __init__(self, rid: str = "resp_0a1b2c3d4e5f") -> None:
        self.rid = rid
        self.events: list[dict[str, Any]] = []
        self.index = 0
        self.add("response.created", response=self._response("in_progress"))
        self.add("response.in_progress", response=self._response("in_progress"))

    def _response(self, status: str, **fields: Any) -> dict[str, Any]:
        base = {"id": self.rid, "object": "response", "created_at": 1795563482, "model": MODEL}
        return {**base, "status": status, "output": [], "usage": None, **fields}

    def add(self, kind: str, **fields: Any) -> Upstream:
        self.events.append({"type": kind, "sequence_number": len(self.events), **fields})
        return self

    def _item(self) -> int:
        self.index += 1
        return self.index - 1

    def message(self, *pieces: str, refusal: tuple[str, ...] = (), deltas: bool = True) -> Upstream:
        idx, mid = self._item(), f"msg_{self.index}"
        item = {"type": "message", "id": mid, "status": "in_progress", "role": "assistant", "content": []}
        self.add("response.output_item.added", output_index=idx, item=item)
        ref = {"item_id": mid, "output_index": idx, "content_index": 0}
        kind, key = ("refusal", "refusal") if refusal else ("output_text", "text")
        full = "".join(refusal or pieces)
        part = {"type": kind, key: full, **({} if refusal else {"annotations": []})}
        self.add("response.content_part.added", **ref, part={**part, key: ""})
        for piece in (refusal or pieces) if deltas else ():
            self.add(f"response.{kind}.delta", **ref, delta=piece)
        self.add(f"response.{kind}.done", **ref, **{key: full})
        self.add("response.content_part.done", **ref, part=part)
        return self.add(
            "response.output_item.done",
            output_index=idx,
            item={**item, "status": "completed", "content": [part]},
        )

    def call(self, call_id: str, name: str, *pieces: str, deltas: bool = True) -> Upstream:
        idx, fid = self._item(), f"fc_{self.index}"
        item = {
            "type": "function_call",
            "id": fid,
            "call_id": call_id,
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        self.add("response.output_item.added", output_index=idx, item=item)
        for piece in pieces if deltas else ():
            self.add("response.function_call_arguments.delta", item_id=fid, output_index=idx, delta=piece)
        args = "".join(pieces)
        self.add("response.function_call_arguments.done", item_id=fid, output_index=idx, arguments=args)
        return self.add(
            "response.output_item.done",
            output_index=idx,
            item={**item, "arguments": args, "status": "completed"},
        )

    def reasoning(self, *parts: list[str]) -> Upstream:
        idx, rid = self._item(), f"rs_{self.index}"
        item = {"type": "reasoning", "id": rid, "summary": []}
        self.add("response.output_item.added", output_index=idx, item=item)
        for n, pieces in enumerate(parts):
            ref = {"item_id": rid, "output_index": idx, "summary_index": n}
            self.add(
                "response.reasoning_summary_part.added", **ref, part={"type": "summary_text", "text": ""}
            )
            for piece in pieces:
                self.add("response.reasoning_summary_text.delta", **ref, delta=piece)
            self.add("response.reasoning_summary_text.done", **ref, text="".join(pieces))
        summary = [{"type": "summary_text", "text": "".join(p)} for p in parts]
        done = {**item, "summary": summary, "encrypted_content": "gAAAAfake"}
        return self.add("response.output_item.done", output_index=idx, item=done)

    def completed(self, usage: dict[str, Any] | None = None) -> Upstream:
        return self.add("response.completed", response=self._response("completed", usage=usage or USAGE))

    def incomplete(self, reason: str) -> Upstream:
        details = {"incomplete_details": {"reason": reason}, "usage": USAGE}
        return self.add("response.incomplete", response=self._response("incomplete", **details))

    def failed(self, code: str, message: str) -> Upstream:
        return self.add(
            "response.failed", response=self._response("failed", error={"code": code, "message": message})
        )

    def sse(self) -> bytes:
        return b"".join(frame(e, event=e["type"]) for e in self.events)

    def response(self) -> dict[str, Any]:
        return aggregate(self.sse())


def pieces(raw: bytes, size: int | None) -> Iterator[bytes]:
    size = size or len(raw) or 1
    for i in range(0, len(raw), size):
        yield raw[i : i + size]


def run(ctx: RequestContext, raw: bytes, size: int | None = None) -> bytes:
    """The stream translator as mitmproxy drives it: chunk by chunk, then b"" at the end."""
    stream = Stream(ctx)
    out: list[bytes] = []
    for chunk in pieces(raw, size):
        out += stream(chunk)
    out += stream(b"")
    assert all(isinstance(b, bytes) and b for b in out)
    return b"".join(out)


def events(body: bytes) -> list[Any]:
    """Parsed client events: chunk dicts, and "[DONE]" as a string."""
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in parse_all(body)]


def ctx_for(expose_reasoning: bool = False, **state: Any) -> RequestContext:
    return RequestContext(
        model=MODEL,
        stream=True,
        options=TranslatorOptions(expose_reasoning=expose_reasoning),
        state=RequestState(**state),
    )


SPLITS = [None, 1, 7, 64]


def deltas(evs: list[Any]) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in evs if isinstance(e, dict) and e.get("choices")]


def finishes(evs: list[Any]) -> list[str]:
    return [e["choices"][0]["finish_reason"] for e in evs if isinstance(e, dict) and e.get("choices")]


@pytest.mark.parametrize("size", SPLITS, ids=lambda s: f"split-{s}")
def test_text_stream_any_split(size):
    raw = Upstream().message("Hel", "lo, wor", "ld — ünïcode ✓").completed().sse()
    evs = events(run(ctx_for(), raw, size))
    assert evs == events(run(ctx_for(), raw))  # the split never changes what the client gets
    chunks = evs[:-1]
    assert evs[-1] == "[DONE]"
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["object"] == "chat.completion.chunk"
        assert (chunk["id"], chunk["model"], chunk["created"]) == ("chatcmpl-0a1b2c3d4e5f", MODEL, 1795563482)
    assert deltas(chunks)[0] == {"role": "assistant"}
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "Hello, world — ünïcode ✓"
    assert finishes(chunks) == [None] * (len(chunks) - 1) + ["stop"]
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert all(c["choices"] for c in chunks)  # no usage chunk unless asked for


def test_captured_upstream_fixture_streams_its_text():
    fixture = Path(__file__).parent / "fixtures" / "sse_responses_text.txt"
    if not fixture.exists():
        pytest.skip("captured reference fixture not present")
    raw = fixture.read_bytes()
    evs = events(run(ctx_for(), raw, 5))
    assert "".join(d.get("content") or "" for d in deltas(evs[:-1])) == "hi there from fake openai"
    assert evs[-2]["id"] == "chatcmpl-15f988aa853e4c8091ff6aae"


def two_calls() -> Upstream:
    return (
        Upstream()
        .message("Checking both.")
        .call("call_a", "get_weather", '{"ci', 'ty": "Par', 'is"}')
        .call("call_b", "get_time", "", '{"tz":', ' "CET"}')
        .completed()
    )


@pytest.mark.parametrize("size", SPLITS, ids=lambda s: f"split-{s}")
def test_parallel_tool_calls_stream_structure(size):
    evs = events(run(ctx_for(), two_calls().sse(), size))
    tool_deltas = [d["tool_calls"] for d in deltas(evs[:-1]) if "tool_calls" in d]
    assert all(len(t) == 1 for t in tool_deltas)
    flat = [t[0] for t in tool_deltas]
    assert flat[0] == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    first_b = next(i for i, t in enumerate(flat) if t["index"] == 1)
    assert flat[first_b] == {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "get_time", "arguments": ""},
    }
    heads = {0, first_b}
    assert all(
        set(t) == {"index", "function"} and set(t["function"]) == {"arguments"}
        for i, t in enumerate(flat)
        if i not in heads
    )
    args = {i: "".join(t["function"]["arguments"] for t in flat if t["index"] == i) for i in (0, 1)}
    assert args == {0: '{"city": "Paris"}', 1: '{"tz": "CET"}'}
    assert finishes(evs[:-1])[-1] == "tool_calls"


# ---------------------------------------------------------------------------------------------------
# The official SDK, offline: its HTTP transport answers with what the proxy would send


def proxy_client(
    upstream: Callable[[dict[str, Any]], Upstream], seen: list[dict[str, Any]] | None = None, **options: Any
):
    """An openai client whose requests go through this family as the addon wires it."""

    def handle(req: Any) -> Any:
        body = json.loads(req.content)
        ctx = RequestContext(
            model=body["model"],
            stream=bool(body.get("stream")),
            headers=dict(req.headers),
            options=TranslatorOptions(**options),
        )
        try:
            up = to_upstream(body, ctx)
        except ProxyError as err:
            return http.Response(err.status, json=err.openai_body())
        if seen is not None:
            seen.append(up)
        raw = upstream(up).sse()
        if not ctx.stream:
            return http.Response(200, json=from_response(aggregate(raw), ctx))
        stream = Stream(ctx)
        chunks = [b for piece in [*pieces(raw, 3), b""] for b in stream(piece)]
        return http.Response(200, headers={"content-type": "text/event-stream"}, content=iter(chunks))

    client = http.Client(transport=http.MockTransport(handle))
    return openai.OpenAI(
        api_key="sk-test", base_url="http://proxy.test/v1", http_client=client, max_retries=0
    )


SDK_TOOLS = [
    WEATHER,
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]


def test_sdk_accumulates_two_parallel_calls_exactly():
    seen: list[dict[str, Any]] = []
    client = proxy_client(lambda up: two_calls(), seen)
    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "weather and time in Paris?"}],
        tools=SDK_TOOLS,
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking both."
    calls = [(c.id, c.type, c.function.name, c.function.arguments) for c in choice.message.tool_calls]
    assert calls == [
        ("call_a", "function", "get_weather", '{"city": "Paris"}'),
        ("call_b", "function", "get_time", '{"tz": "CET"}'),
    ]
    assert final.id == "chatcmpl-0a1b2c3d4e5f"
    assert final.usage.model_dump(exclude_none=True) == CHAT_USAGE
    assert seen[0]["tools"][0]["name"] == "get_weather"


def test_sdk_tool_only_stream_matches_the_non_streaming_answer():
    def upstream(up):
        return Upstream().call("call_a", "get_time", "{}").completed()

    client = proxy_client(upstream)
    args = {"model": MODEL, "messages": [{"role": "user", "content": "time?"}], "tools": SDK_TOOLS}
    with client.chat.completions.stream(**args) as stream:
        streamed = stream.get_final_completion().choices[0].message
    unary = client.chat.completions.create(**args).choices[0].message
    assert streamed.content is None and unary.content is None
    assert streamed.tool_calls[0].function.arguments == unary.tool_calls[0].function.arguments == "{}"


def test_sdk_raises_on_a_failure_mid_stream():
    def upstream(up):
        return Upstream().message("partial ans").failed("server_error", "the model crashed")

    client = proxy_client(upstream)
    with (
        pytest.raises(openai.APIError, match="the model crashed"),
        client.chat.completions.stream(model=MODEL, messages=[{"role": "user", "content": "hi"}]) as stream,
    ):
        stream.get_final_completion()


def test_sdk_reads_reasoning_refusal_and_legacy_function_call():
    client = proxy_client(
        lambda up: Upstream().reasoning(["Think", "ing"]).message(refusal=("I can", "'t.")).completed(),
        expose_reasoning=True,
    )
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    chunks = list(stream)
    assert (
        "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        == "Thinking"
    )
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices) == "I can't."

    legacy = proxy_client(
        lambda up: Upstream().call("call_x", "get_weather", '{"city":', '"Rome"}').completed()
    )
    with legacy.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "weather?"}], functions=[WEATHER["function"]]
    ) as stream:
        final = stream.get_final_completion().choices[0]
    assert final.finish_reason == "function_call"
    assert (final.message.function_call.name, final.message.function_call.arguments) == (
        "get_weather",
        '{"city":"Rome"}',
    )
    assert not final.message.tool_calls


def test_sdk_gets_a_400_for_what_cannot_be_honoured():
    client = proxy_client(lambda up: Upstream().completed())
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=3)
    assert info.value.body["param"] == "n"


# ---------------------------------------------------------------------------------------------------
# Stream details


def test_usage_chunk_only_when_asked():
    raw = Upstream().message("hi").completed().sse()
    evs = events(run(ctx_for(include_usage=True), raw))
    assert evs[-1] == "[DONE]"
    assert evs[-2]["choices"] == [] and evs[-2]["usage"] == CHAT_USAGE
    assert evs[-3]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in e for e in events(run(ctx_for(), raw))[:-1])


@pytest.mark.parametrize("expose", [True, False])
def test_reasoning_summaries_only_when_exposed(expose):
    raw = (
        Upstream()
        .reasoning(["**Plan**", " first"], ["**Then** act"])
        .reasoning(["More"])
        .message("ok")
        .completed()
        .sse()
    )
    evs = events(run(ctx_for(expose_reasoning=expose), raw, 5))
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas(evs[:-1]))
    assert reasoning == ("**Plan** first\n\n**Then** act\n\nMore" if expose else "")
    assert "".join(d.get("content") or "" for d in deltas(evs[:-1])) == "ok"


@pytest.mark.parametrize(
    ("end", "reason"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter")],
)
def test_incomplete_answers_say_how_they_ended(end, reason):
    raw = Upstream().message("cut sho").incomplete(end).sse()
    evs = events(run(ctx_for(include_usage=True), raw))
    assert evs[-1] == "[DONE]"
    assert evs[-3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
    assert evs[-2]["usage"] == CHAT_USAGE


@pytest.mark.parametrize("size", SPLITS, ids=lambda s: f"split-{s}")
def test_stop_string_cuts_the_stream(size):
    raw = Upstream().message("Hello ST", "OP world").call("call_a", "f", "{}").completed().sse()
    evs = events(run(ctx_for(stop=["STOP", "never"], include_usage=True), raw, size))
    assert "".join(d.get("content") or "" for d in deltas(evs)) == "Hello "
    assert not any("tool_calls" in d for d in deltas(evs))
    assert [f for f in finishes(evs) if f] == ["stop"]
    assert evs[-2]["usage"] == CHAT_USAGE and evs[-1] == "[DONE]"


def test_stop_prefix_held_back_is_released_when_no_stop_follows():
    raw = Upstream().message("a#", "b#", "#").completed().sse()
    evs = events(run(ctx_for(stop=["###"]), raw))
    assert "".join(d.get("content") or "" for d in deltas(evs)) == "a#b##"
    assert finishes(evs)[-1] == "stop"


def test_upstream_failure_after_a_stop_string_still_ends_cleanly():
    raw = Upstream().message("done. STOP and more").failed("server_error", "boom").sse()
    evs = events(run(ctx_for(stop=["STOP"]), raw))
    assert "".join(d.get("content") or "" for d in deltas(evs)) == "done. "
    assert evs[-1] == "[DONE]"


@pytest.mark.parametrize("size", [None, 1], ids=["whole", "bytewise"])
def test_failure_mid_stream_is_an_error_chunk_without_done(size):
    raw = (
        Upstream()
        .message("partial")
        .failed("rate_limit_exceeded", "Rate limit reached. Try again in 3s.")
        .sse()
    )
    evs = events(run(ctx_for(include_usage=True), raw, size))
    assert "[DONE]" not in evs
    assert not any(finishes(evs))
    assert evs[-1] == {
        "error": {
            "message": "Rate limit reached. Try again in 3s.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


@pytest.mark.parametrize("cut", ["between-events", "inside-an-event"])
def test_upstream_cut_off_is_an_error_not_a_finish(cut):
    raw = Upstream().message("half an ans").sse()
    raw = raw[: raw.rindex(b"event: ")] if cut == "between-events" else raw[:-40]
    evs = events(run(ctx_for(include_usage=True), raw))
    assert "half an ans".startswith("".join(d.get("content") or "" for d in deltas(evs)))
    assert "[DONE]" not in evs and not any(finishes(evs))
    assert evs[-1]["error"]["type"] == "server_error"
    if cut == "between-events":
        assert "ended before the response was complete" in evs[-1]["error"]["message"]


def test_heartbeat_is_a_comment_the_sdk_ignores():
    up = Upstream().message("hi")
    up.events.insert(3, {"type": HEARTBEAT_EVENT})
    raw = up.completed().sse()
    body = run(ctx_for(), raw)
    assert b"\n: keepalive\n\n" in body
    assert [e for e in events(body) if e == "[DONE]"] == ["[DONE]"]


def test_items_without_deltas_are_sent_when_done():
    raw = (
        Upstream()
        .message("whole text", deltas=False)
        .call("call_a", "f", '{"x":1}', deltas=False)
        .completed()
        .sse()
    )
    evs = events(run(ctx_for(), raw))
    ds = deltas(evs)
    assert "".join(d.get("content") or "" for d in ds) == "whole text"
    calls = [t for d in ds for t in d.get("tool_calls", [])]
    assert calls == [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"x":1}'}},
    ]


# ---------------------------------------------------------------------------------------------------
# from_response


def answer(up: Upstream, expose_reasoning: bool = False, **state: Any) -> dict[str, Any]:
    options = TranslatorOptions(expose_reasoning=expose_reasoning)
    body = from_response(
        up.response(), RequestContext(model=MODEL, options=options, state=RequestState(**state))
    )
    ChatCompletion.model_validate(body)
    return body


def test_text_answer():
    body = answer(Upstream().message("  Hello", " there  ").completed())
    assert body["id"] == "chatcmpl-0a1b2c3d4e5f"
    assert (body["object"], body["model"], body["created"], body["system_fingerprint"]) == (
        "chat.completion",
        MODEL,
        1795563482,
        None,
    )
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "  Hello there  ", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == CHAT_USAGE


def test_tool_call_answer_has_null_content():
    message = answer(two_calls())["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["content"] == "Checking both."
    only_calls = answer(Upstream().call("call_a", "f", '{"a":', "1}").completed())["choices"][0]
    assert only_calls["message"]["content"] is None
    assert only_calls["message"]["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]


@pytest.mark.parametrize("expose", [True, False])
def test_reasoning_in_answer_only_when_exposed(expose):
    up = Upstream().reasoning(["A", "B"], ["C"]).message("ok").completed()
    message = answer(up, expose_reasoning=expose)["choices"][0]["message"]
    assert message.get("reasoning_content") == ("AB\n\nC" if expose else None)
    assert message["content"] == "ok"


@pytest.mark.parametrize(
    ("end", "reason"), [("max_output_tokens", "length"), ("content_filter", "content_filter")]
)
def test_incomplete_answer(end, reason):
    body = answer(Upstream().message("cut").incomplete(end))
    assert body["choices"][0]["finish_reason"] == reason
    assert body["choices"][0]["message"]["content"] == "cut"
    assert body["usage"] == CHAT_USAGE


def test_refusal_answer():
    message = answer(Upstream().message(refusal=("No.",)).completed())["choices"][0]["message"]
    assert (message["content"], message["refusal"]) == (None, "No.")


def test_stop_string_cuts_the_answer_and_later_calls():
    body = answer(
        Upstream().message("one two STOP three").call("call_a", "f", "{}").completed(), stop=["STOP"]
    )
    choice = body["choices"][0]
    assert choice["message"]["content"] == "one two "
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"


def test_legacy_function_call_answer():
    body = answer(Upstream().call("call_a", "get_weather", "{}").completed(), legacy_functions=True)
    choice = body["choices"][0]
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": "{}"}
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "function_call"


def test_non_streaming_sdk_round_trip_with_tool_result():
    seen: list[dict[str, Any]] = []
    client = proxy_client(lambda up: Upstream().message("It is 22C in Paris.").completed(), seen)
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [tool_call("call_a", "get_weather", '{"city":"Paris"}')],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "22C"},
        ],
        tools=[WEATHER],
    )
    assert completion.choices[0].message.content == "It is 22C in Paris."
    assert completion.usage.prompt_tokens_details.cached_tokens == 64
    assert seen[0]["input"][1:] == [
        call("call_a", "get_weather", '{"city":"Paris"}'),
        output("call_a", "22C"),
    ]
