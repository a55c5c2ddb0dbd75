"""Field fidelity through the real proxy: stream shapes other backend builds send, the backend's error
codes, request fields and tool types it refuses, custom tools and long tool names on every route.

Each class of issue 19's table has a test here: the fake backend is switched into the shape (its opt-in
`Turn.shapes`) or the refusal, and the official SDKs read the proxy's answer, streamed and not.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from codex_api_proxy.core.sse import parse_all
from codex_api_proxy.testing.fake_backend import (
    STREAM_SHAPES,
    FakeBackend,
    Turn,
    custom_tool_call,
    function_call,
    reasoning,
    text,
)

from .conftest import Proxy

MODEL = "gpt-5.5"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
ALL_SHAPES = frozenset(STREAM_SHAPES)
SHAPES = [
    frozenset({"interleaved"}),
    frozenset({"names_at_done"}),
    frozenset({"interleaved", "names_at_done", "no_output_index", "no_sequence_number"}),
    frozenset({"text_at_done", "no_output_index"}),
    ALL_SHAPES,
]


def _ids(shapes: frozenset[str]) -> str:
    return "+".join(sorted(shapes))


def two_calls(shapes: frozenset[str]) -> Turn:
    return Turn(
        output=[
            reasoning("Look both up."),
            text("Checking both cities."),
            function_call("weather", {"city": "Paris"}, "call_a"),
            function_call("weather", {"city": "Lima"}, "call_b"),
        ],
        shapes=shapes,
    )


@pytest.fixture
def claude(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def oai(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.v1, api_key="unused", max_retries=0, timeout=30)


# ---- stream shapes, each family, streamed == not streamed ---------------------------------------


@pytest.mark.parametrize("shapes", SHAPES, ids=_ids)
def test_anthropic_parallel_calls_keep_names_and_inputs(
    claude: anthropic.Anthropic, fake: FakeBackend, shapes: frozenset[str]
) -> None:
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": "weather in Paris and Lima?"}],
        "tools": [{"name": "weather", "input_schema": WEATHER}],
    }
    fake.enqueue(two_calls(shapes), two_calls(shapes))
    with claude.messages.stream(**request) as stream:
        streamed = stream.get_final_message()
    whole = claude.messages.create(**request)
    for message in (streamed, whole):
        calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
        assert calls == [("call_a", "weather", {"city": "Paris"}), ("call_b", "weather", {"city": "Lima"})]
        assert [b.text for b in message.content if b.type == "text"] == ["Checking both cities."]
        assert message.stop_reason == "tool_use"
    assert streamed.model_dump(exclude={"id"}) == whole.model_dump(exclude={"id"})


@pytest.mark.parametrize("shapes", SHAPES, ids=_ids)
def test_chat_parallel_calls_keep_names_indices_and_arguments(
    oai: openai.OpenAI, fake: FakeBackend, shapes: frozenset[str]
) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "weather in Paris and Lima?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}],
    }
    fake.enqueue(two_calls(shapes), two_calls(shapes))
    with oai.chat.completions.stream(**request) as stream:
        streamed = stream.get_final_completion().choices[0].message
    whole = oai.chat.completions.create(**request).choices[0].message
    for message in (streamed, whole):
        calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
        assert calls == [("call_a", "weather", {"city": "Paris"}), ("call_b", "weather", {"city": "Lima"})]
        assert message.content == "Checking both cities."


@pytest.mark.parametrize("shapes", SHAPES, ids=_ids)
def test_responses_stream_and_answer_hold_every_item(
    oai: openai.OpenAI, fake: FakeBackend, shapes: frozenset[str]
) -> None:
    """Among them the Codex CLI's own fixture shape: text only in output_item.done, no output_index."""
    turn = Turn(
        output=[
            text("Checking both cities."),
            function_call("weather", {"city": "Paris"}, "call_a"),
            custom_tool_call("apply_patch", "*** Begin Patch\n*** End Patch", "call_c"),
        ],
        shapes=shapes,
    )
    fake.enqueue(turn, turn)
    request: dict[str, Any] = {"model": MODEL, "input": "weather?", "store": False}
    with oai.responses.stream(**request) as stream:
        streamed = stream.get_final_response()
    whole = oai.responses.create(**request)
    for response in (streamed, whole):
        assert response.output_text == "Checking both cities."
        calls = [(i.type, i.call_id, i.name) for i in response.output if i.type != "message"]
        assert calls == [
            ("function_call", "call_a", "weather"),
            ("custom_tool_call", "call_c", "apply_patch"),
        ]
        assert response.output[1].arguments == '{"city":"Paris"}'
        assert response.output[2].input == "*** Begin Patch\n*** End Patch"
    strip = {"id", "created_at"}
    assert [i.model_dump(exclude=strip, exclude_none=True) for i in streamed.output] == [
        i.model_dump(exclude=strip, exclude_none=True) for i in whole.output
    ]


# ---- the backend's error codes --------------------------------------------------------------------

REFUSALS = ["cyber_policy", "invalid_prompt", "context_length_exceeded", "content_policy_violation"]


@pytest.mark.parametrize("code", REFUSALS)
def test_refusals_are_400_invalid_request_never_retried(
    claude: anthropic.Anthropic, oai: openai.OpenAI, fake: FakeBackend, code: str
) -> None:
    failed = Turn(output=[], fail={"code": code, "message": f"refused: {code}"})
    fake.enqueue(failed, failed, failed)
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as oinfo:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert oinfo.value.body["type"] == "invalid_request_error" and f"refused: {code}" in oinfo.value.message
    # in-band, streamed: the Anthropic error event's type is the refusal's, not api_error
    with (
        claude.messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        ) as stream,
        pytest.raises(anthropic.APIStatusError) as sinfo,
    ):
        stream.get_final_message()
    assert sinfo.value.body["error"]["type"] == "invalid_request_error"
    assert fake.pending() == 0 and len(fake.responses_requests) == 3  # the proxy did not retry either


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("server_is_overloaded", 529, "overloaded_error"),
        ("slow_down", 529, "overloaded_error"),
        ("rate_limit_exceeded", 429, "rate_limit_error"),
        ("usage_not_included", 403, "permission_error"),
        ("insufficient_quota", 429, "rate_limit_error"),
        ("previous_response_not_found", 400, "invalid_request_error"),
        ("token_expired", 401, "authentication_error"),
        ("server_error", 502, "api_error"),
        ("some_new_code", 502, "api_error"),
    ],
)
def test_other_failure_codes_map_to_what_clients_retry_or_not(
    http: httpx.Client, fake: FakeBackend, code: str, status: int, kind: str
) -> None:
    fake.enqueue(Turn(output=[], fail={"code": code, "message": "m"}))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]}
    r = http.post("/v1/messages", json=body)
    assert (r.status_code, r.json()["error"]["type"]) == (status, kind)
    assert ("codex login" in r.json()["error"]["message"]) == (
        status == 401
    )  # the re-login hint: credentials only


# ---- requests: the field policy, tool types, custom tools, long names -----------------------------


def test_responses_fields_the_backend_refuses_are_dropped_and_preview_search_renamed(
    oai: openai.OpenAI, fake: FakeBackend
) -> None:
    response = oai.responses.create(
        model=MODEL,
        input="hi",
        tools=[{"type": "web_search_preview_2025_03_11"}, {"type": "web_search_preview"}],
        extra_body={
            "prompt_cache_retention": "24h",
            "context_management": [{"type": "compaction"}],
            "reasoning": {"effort": "low", "generate_summary": "auto"},
        },
    )
    assert response.output_text
    sent = fake.responses_requests[-1].body
    assert "prompt_cache_retention" not in sent and "context_management" not in sent
    assert [t["type"] for t in sent["tools"]] == ["web_search", "web_search"]
    assert sent["reasoning"] == {"effort": "low"}


LONG = "mcp__a_very_long_server_name_for_testing__and_an_even_longer_tool_name_beyond_64"


def test_chat_custom_tools_and_long_names_go_up_and_come_back(oai: openai.OpenAI, fake: FakeBackend) -> None:
    assert len(LONG) > 64
    tools: list[Any] = [
        {"type": "function", "function": {"name": LONG, "parameters": WEATHER}},
        {"type": "custom", "custom": {"name": "apply_patch", "description": "patch files"}},
    ]
    history: list[Any] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": LONG, "arguments": "{}"}},
            {"id": "c2", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin Patch"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "Done!"},
    ]  # fmt: skip
    fake.enqueue(Turn(output=[text("ok")]))
    oai.chat.completions.create(
        model=MODEL,
        messages=history,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": LONG}},
    )
    sent = fake.responses_requests[-1].body
    sent_names = [t["name"] for t in sent["tools"]]
    assert all(len(n) <= 64 for n in sent_names) and sent_names[1] == "apply_patch"
    assert sent["tools"][1]["type"] == "custom"
    assert sent["tool_choice"] == {"type": "function", "name": sent_names[0]}
    kinds = [(i["type"], i.get("name")) for i in sent["input"] if i["type"] != "message"]
    assert kinds == [("function_call", sent_names[0]), ("custom_tool_call", "apply_patch"),
                     ("function_call_output", None), ("custom_tool_call_output", None)]  # fmt: skip

    turn = Turn(
        output=[
            function_call(sent_names[0], {"city": "Oslo"}, "c3"),
            custom_tool_call("apply_patch", "P", "c4"),
        ]
    )
    fake.enqueue(turn, turn)
    whole = oai.chat.completions.create(model=MODEL, messages=history, tools=tools).choices[0].message
    calls = whole.model_dump()["tool_calls"]
    assert calls[0]["function"] == {"name": LONG, "arguments": '{"city":"Oslo"}'}
    assert (calls[1]["type"], calls[1]["custom"]) == ("custom", {"name": "apply_patch", "input": "P"})
    # streamed: the SDK's stream helper cannot build custom calls (openai-python 2.x: AttributeError on
    # `custom.name`), so the chunks are merged as its accumulator does, by index, strings concatenated
    merged: dict[int, dict[str, Any]] = {}
    for chunk in oai.chat.completions.create(model=MODEL, messages=history, tools=tools, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            _merge(merged.setdefault(delta.index, {}), delta.model_dump(exclude_none=True, exclude={"index"}))
    assert [merged[i] for i in sorted(merged)] == calls


def _merge(into: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if isinstance(value, dict):
            _merge(into.setdefault(key, {}), value)
        elif isinstance(value, str) and isinstance(into.get(key), str) and key not in ("id", "type"):
            into[key] += value
        else:
            into[key] = value


def test_responses_long_names_shortened_and_restored(oai: openai.OpenAI, fake: FakeBackend) -> None:
    tools: list[Any] = [{"type": "function", "name": LONG, "parameters": WEATHER}]
    fake.enqueue(Turn(output=[text("ok")]))
    oai.responses.create(model=MODEL, input="hi", tools=tools, store=False)
    upstream = fake.responses_requests[-1].body["tools"][0]["name"]
    assert len(upstream) <= 64
    turn = Turn(output=[function_call(upstream, {"city": "Oslo"}, "c1")])
    fake.enqueue(turn, turn)
    whole = oai.responses.create(model=MODEL, input="hi", tools=tools, store=False)
    with oai.responses.stream(model=MODEL, input="hi", tools=tools, store=False) as stream:
        streamed = stream.get_final_response()
    assert whole.output[0].name == streamed.output[0].name == LONG


def test_the_fake_refuses_what_the_backend_refuses(fake: FakeBackend) -> None:
    """The proxy's tests are only as strict as the fake: it refuses foreign fields, preview tool
    types and names over 64 characters, like the backend."""
    base = {"model": MODEL, "input": [], "stream": True, "store": False}
    headers = {"authorization": "Bearer " + next(iter(fake.access_tokens))}
    if fake.account_id:
        headers["chatgpt-account-id"] = fake.account_id
    for extra in ({"prompt_cache_retention": "24h"}, {"tools": [{"type": "web_search_preview"}]},
                  {"tools": [{"type": "function", "name": "x" * 65, "parameters": WEATHER}]}):  # fmt: skip
        r = httpx.post(fake.url + "/responses", json={**base, **extra}, headers=headers, trust_env=False)
        assert r.status_code == 400, extra


def test_the_fake_stream_shapes_do_what_they_say(fake: FakeBackend) -> None:
    """The opt-in shapes (issue 19), each visible in the fake's raw stream."""
    headers = {"authorization": "Bearer " + next(iter(fake.access_tokens or {"x"}))}
    if fake.account_id:
        headers["chatgpt-account-id"] = fake.account_id
    body = {"model": MODEL, "input": [], "stream": True, "store": False}

    def stream(shapes: frozenset[str]) -> list[dict[str, Any]]:
        turn = Turn(output=[text("hi"), function_call("a", "{}", "ca"), function_call("b", "{}", "cb")])
        fake.enqueue(dataclasses.replace(turn, shapes=shapes))
        r = httpx.post(fake.url + "/responses", json=body, headers=headers, trust_env=False)
        return [json.loads(e.data) for e in parse_all(r.content)]

    def at(events: list[dict[str, Any]], kind: str, call_id: str) -> int:
        return next(
            n for n, e in enumerate(events) if e["type"] == kind and e["item"].get("call_id") == call_id
        )

    events = stream(frozenset({"interleaved"}))
    added, done = "response.output_item.added", "response.output_item.done"
    assert at(events, added, "cb") < at(events, done, "ca") and at(events, done, "cb") < at(
        events, done, "ca"
    )
    events = stream(frozenset({"names_at_done", "no_output_index", "no_sequence_number"}))
    assert [e["item"]["name"] for e in events if e["type"] == added and e["item"].get("call_id")] == ["", ""]
    assert not any("output_index" in e or "sequence_number" in e for e in events)
    events = stream(frozenset({"text_at_done"}))
    message = [e["type"] for e in events if (e.get("item") or {}).get("type") == "message" or
               str(e.get("item_id", "")).startswith("msg")]  # fmt: skip
    assert message == [done]
