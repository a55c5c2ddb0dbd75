"""Stored-state emulation through the real proxy: item_reference and previous_response_id, expanded from
the proxy's conversation store because the Codex backend keeps nothing (store=false)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.core.conversations import ConversationStore, conversation_headers
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, reasoning, text

from .conftest import Proxy, start_proxy

WEATHER_TOOL = {"type": "function", "name": "get_weather", "strict": True,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": False}}  # fmt: skip


def post(http: httpx.Client, body: dict) -> httpx.Response:
    return http.post("/v1/responses", json=body)


def test_ai_sdk_item_reference_replay_reaches_backend_with_encrypted_reasoning(
    http: httpx.Client, fake: FakeBackend
) -> None:
    """The Vercel AI SDK's `openai.responses()` pattern (store: true by default): after a reasoning
    item and a tool call, the next turn refers to them by id instead of sending them."""
    fake.enqueue(
        Turn(output=[reasoning("Need the weather."), function_call("get_weather", {"city": "Paris"})])
    )
    first_input = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
    ]
    first = post(http, {"model": "gpt-5.5", "store": True, "include": ["reasoning.encrypted_content"],
                        "tools": [WEATHER_TOOL], "input": first_input})  # fmt: skip
    assert first.status_code == 200, first.text
    rs, call = first.json()["output"]
    assert rs["type"] == "reasoning" and rs["encrypted_content"]
    fake.enqueue(Turn(output=[text("It is sunny in Paris.")]))
    second = post(http, {
        "model": "gpt-5.5", "store": True, "include": ["reasoning.encrypted_content"], "tools": [WEATHER_TOOL],
        "input": [{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                  {"type": "item_reference", "id": rs["id"]},
                  {"type": "item_reference", "id": call["id"]},
                  {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky":"sunny"}'}],
    })  # fmt: skip
    assert second.status_code == 200, second.text
    assert second.json()["output_text"] == "It is sunny in Paris."
    sent = fake.responses_requests[-1].body
    assert sent["store"] is False
    kinds = [i.get("type", "message") for i in sent["input"]]
    assert kinds == ["message", "message", "reasoning", "function_call", "function_call_output"]
    assert sent["input"][2]["encrypted_content"] == rs["encrypted_content"]
    assert rs["encrypted_content"] in fake.accepted_encrypted_content  # the backend verified it
    assert sent["input"][3]["call_id"] == call["call_id"] and sent["input"][3]["name"] == "get_weather"

    # the turn after a text answer: the assistant message is a reference too (its text is not sent)
    answer = second.json()["output"][0]
    fake.enqueue(Turn(output=[text("Yes, take sunglasses.")]))
    third = post(http, {
        "model": "gpt-5.5", "store": True, "input": [*first_input, {"type": "item_reference", "id": rs["id"]},
            {"type": "item_reference", "id": call["id"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky":"sunny"}'},
            {"type": "item_reference", "id": answer["id"]},
            {"role": "user", "content": [{"type": "input_text", "text": "Sunglasses?"}]}],
    })  # fmt: skip
    assert third.status_code == 200, third.text
    replayed = fake.responses_requests[-1].body["input"][5]
    assert replayed["role"] == "assistant" and replayed["content"][0]["text"] == "It is sunny in Paris."


def test_previous_response_id_over_three_turns_sends_the_whole_history(
    http: httpx.Client, fake: FakeBackend
) -> None:
    fake.enqueue(
        Turn(output=[reasoning("Call the tool."), function_call("get_weather", {"city": "Oslo"})]),
        Turn(output=[text("Oslo is cold.")]),
        Turn(output=[text("Bring a coat.")]),
    )
    one = post(http, {"model": "gpt-5.5", "input": "Weather in Oslo?", "tools": [WEATHER_TOOL],
                      "instructions": "be brief"}).json()  # fmt: skip
    call = one["output"][1]
    two = post(http, {"model": "gpt-5.5", "previous_response_id": one["id"], "tools": [WEATHER_TOOL],
                      "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "-5C"}]})  # fmt: skip
    assert two.status_code == 200, two.text
    three = post(http, {"model": "gpt-5.5", "previous_response_id": two.json()["id"], "stream": True,
                        "input": "What should I wear?"})  # fmt: skip
    assert three.status_code == 200 and "Bring a coat." in three.text
    bodies = [r.body for r in fake.responses_requests]
    assert "previous_response_id" not in bodies[1] and "previous_response_id" not in bodies[2]
    history = bodies[2]["input"]
    summary = [(i.get("type", "message"), i.get("role")) for i in history]
    assert summary == [
        ("message", "user"), ("reasoning", None), ("function_call", None), ("function_call_output", None),
        ("message", "assistant"), ("message", "user"),
    ]  # fmt: skip
    assert history[0]["content"][0]["text"] == "Weather in Oslo?"
    assert history[1]["encrypted_content"] == one["output"][0]["encrypted_content"]
    assert history[4]["content"][0]["text"] == "Oslo is cold."
    assert history[5]["content"][0]["text"] == "What should I wear?"
    assert all("id" not in i for i in history if i.get("type") != "reasoning")  # store=false rules
    assert fake.pending() == 0


@pytest.mark.parametrize(
    ("field", "body", "code"),
    [
        ("previous_response_id", {"previous_response_id": "resp_never_seen"}, "previous_response_not_found"),
        ("input[1]", {"input": [{"role": "user", "content": "hi"}, {"type": "item_reference", "id": "rs_never_seen"}]},
         "item_not_found"),
    ],
)  # fmt: skip
def test_unknown_ids_get_a_400_naming_them(
    http: httpx.Client, fake: FakeBackend, field: str, body: dict, code: str
) -> None:
    r = post(http, {"model": "gpt-5.5", "input": "hi", **body})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code and error["param"] == field
    assert "_never_seen'" in error["message"]
    assert fake.responses_requests == []


@pytest.fixture
def small_store_proxy(tmp_path: Path, backend: FakeBackend) -> Iterator[Proxy]:
    # a response with one message stores 2 entries (the turn and its message): room for 2 responses
    p = start_proxy(tmp_path, backend, env={"CODEX_API_PROXY_STORE_MAX_ITEMS": "4"})
    yield p
    p.stop()


def test_store_bounds_evict_the_oldest_then_a_clear_400(small_store_proxy: Proxy, fake: FakeBackend) -> None:
    ids = []
    with httpx.Client(base_url=small_store_proxy.url, timeout=30, trust_env=False) as http:
        for n in range(3):
            fake.enqueue(Turn(output=[text(f"answer {n}")]))
            ids.append(post(http, {"model": "gpt-5.5", "input": f"question {n}"}).json()["id"])
        fake.enqueue(Turn(output=[text("still here")]))
        kept = post(http, {"model": "gpt-5.5", "previous_response_id": ids[2], "input": "go on"})
        assert kept.status_code == 200, kept.text
        gone = post(http, {"model": "gpt-5.5", "previous_response_id": ids[0], "input": "go on"})
    assert gone.status_code == 400
    assert gone.json()["error"]["code"] == "previous_response_not_found"
    assert ids[0] in gone.json()["error"]["message"]
    assert len(fake.responses_requests) == 4  # the refused one never reached the backend


# --- the store and the headers as plain functions -------------------------------------------------


def test_store_limits_bytes_and_ttl_and_scopes_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("codex_api_proxy.core.conversations.time.monotonic", lambda: clock[0])
    store = ConversationStore(max_entries=100, max_bytes=2000, ttl=60)
    a, b = store.conversation("acct-a"), store.conversation("acct-b")
    for n in range(5):
        a.remember(f"resp_{n}", [], [{"type": "message", "id": f"msg_{n}", "content": "x" * 40}])
    assert store.bytes_used <= 2000 and store.evicted > 0
    assert a.turn("resp_0") is None and a.turn("resp_4") is not None
    assert b.turn("resp_4") is None and b.item("msg_4") is None  # another account sees nothing
    clock[0] += 30
    a.remember("resp_new", [], [])
    clock[0] += 40
    assert a.turn("resp_4") is None and a.turn("resp_new") is not None  # unused for 70 s and 40 s
    clock[0] += 61
    assert a.turn("resp_new") is None and len(store) == 0


def test_conversation_headers_in_current_codex_spelling() -> None:
    derived = conversation_headers({"originator": "x", "session_id": "old-style"}, "cxp-key")
    assert derived == {"originator": "x", "session-id": "old-style", "thread-id": "old-style",
                       "x-client-request-id": "old-style"}  # fmt: skip
    assert conversation_headers({}, "cxp-key") == {
        "session-id": "cxp-key", "thread-id": "cxp-key", "x-client-request-id": "cxp-key"}  # fmt: skip
    codex = {"session-id": "s", "thread-id": "t", "x-client-request-id": "t"}
    assert conversation_headers(codex, "cxp-key") == codex
    # a per-request id in that header (Claude Code sends one) would change every turn: the thread id wins
    claude = {"x-client-request-id": "per-request-7"}
    assert conversation_headers(claude, "cc-1")["x-client-request-id"] == "cc-1"
    assert conversation_headers({}, None) == {}


CONVERSATION_HEADERS = ("session-id", "thread-id", "x-client-request-id")


def test_conversation_headers_upstream_are_derived_for_clients_that_send_none(
    http: httpx.Client, fake: FakeBackend
) -> None:
    fake.enqueue(Turn(), Turn(), Turn(), Turn())
    post(http, {"model": "gpt-5.5", "instructions": "sys", "input": "first"})
    post(http, {"model": "gpt-5.5", "instructions": "sys", "input": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "again"}]})  # fmt: skip
    http.post("/v1/messages", json={"model": "gpt-5.5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
              headers={"x-claude-code-session-id": "cc-sess-1"})  # fmt: skip
    codex_ids = {
        "session-id": "s-1",
        "thread-id": "t-1",
        "x-client-request-id": "t-1",
        "session_id": "legacy",
    }
    post_headers = {**codex_ids, "originator": "codex_exec"}
    http.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"}, headers=post_headers)
    one, two, claude, codex = fake.responses_requests
    for sent in (one, two, claude, codex):
        assert "session_id" not in sent.headers  # only the spelling current Codex uses
    key = one.body["prompt_cache_key"]
    assert [one.headers[h] for h in CONVERSATION_HEADERS[:2]] == [key, key]
    assert [two.headers[h] for h in CONVERSATION_HEADERS[:2]] == [key, key]  # same conversation, same ids
    assert [claude.headers[h] for h in CONVERSATION_HEADERS[:2]] == ["cc-sess-1"] * 2
    # x-client-request-id is the thread id, as the Codex CLI sends it: stable for the conversation
    assert one.headers["x-client-request-id"] == two.headers["x-client-request-id"] == key
    assert claude.headers["x-client-request-id"] == "cc-sess-1"
    assert [codex.headers[h] for h in CONVERSATION_HEADERS] == ["s-1", "t-1", "t-1"]  # a client's own kept
    assert codex.headers["originator"] == "codex_exec"


def test_store_false_responses_are_not_kept(http: httpx.Client, fake: FakeBackend) -> None:
    """As on the OpenAI API: what a client asked not to store cannot be referred to later."""
    fake.enqueue(Turn(output=[text("not kept")]))
    first = post(http, {"model": "gpt-5.5", "input": "hi", "store": False}).json()
    again = post(http, {"model": "gpt-5.5", "input": "more", "previous_response_id": first["id"]})
    assert again.status_code == 400 and again.json()["error"]["code"] == "previous_response_not_found"
    ref = post(
        http, {"model": "gpt-5.5", "input": [{"type": "item_reference", "id": first["output"][0]["id"]}]}
    )
    assert ref.status_code == 400 and ref.json()["error"]["code"] == "item_not_found"


def test_store_limits_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CODEX_API_PROXY_STORE_MAX_ITEMS", "12")
    monkeypatch.setenv("CODEX_API_PROXY_STORE_MAX_BYTES", "4096")
    monkeypatch.setenv("CODEX_API_PROXY_STORE_TTL", "oops")
    store = ConversationStore.from_env()
    assert (store.max_entries, store.max_bytes, store.ttl) == (12, 4096, 2 * 3600.0)
    assert "CODEX_API_PROXY_STORE_TTL='oops' is not a positive number" in caplog.text
