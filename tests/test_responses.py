"""/v1/responses through the real proxy with the official openai SDK and the fake Codex backend."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, reasoning, text

from .conftest import ACCESS_TOKEN, ACCOUNT_ID, Proxy


@pytest.fixture
def client(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.v1, api_key="unused-locally", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=30))  # fmt: skip


def test_stream_gets_text_and_full_final_response(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("Hello there, streamed.", chunks=4)]))
    with client.responses.stream(
        model="gpt-5.5", input="say hello", max_output_tokens=50, temperature=0.2
    ) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "Hello there, streamed."
    assert final.output_text == "Hello there, streamed."  # although the backend's completed.output was []
    assert final.usage is not None and final.usage.output_tokens > 0
    sent = fake.responses_requests[-1]
    assert sent.body["stream"] is True and sent.body["store"] is False
    assert "max_output_tokens" not in sent.body and "temperature" not in sent.body
    assert sent.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert sent.headers["chatgpt-account-id"] == ACCOUNT_ID
    assert sent.headers["originator"]
    assert "codex-api-proxy" in sent.headers["user-agent"]


def test_stream_is_relayed_chunk_by_chunk(proxy: Proxy, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("slow answer", chunks=5)], delay=0.4))
    started = time.monotonic()
    first = None
    with httpx.stream("POST", proxy.v1 + "/responses", json={"model": "gpt-5.5", "input": "hi", "stream": True},
                      trust_env=False, timeout=30) as r:  # fmt: skip
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event:") and first is None:
                first = time.monotonic() - started
        total = time.monotonic() - started
    assert first is not None
    assert total > 3.0  # ~10 events 0.4 s apart
    assert first < total - 2.5  # the first event arrived long before the upstream finished


def test_non_streaming_text(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("plain answer")]))
    resp = client.responses.create(model="gpt-5.5", input="hi", instructions="be brief")
    assert resp.output_text == "plain answer"
    assert resp.status == "completed"
    assert resp.usage.input_tokens > 0
    sent = fake.responses_requests[-1].body
    assert sent["instructions"] == "be brief"
    assert sent["input"][0]["role"] == "user"


def test_non_streaming_function_call_and_reasoning(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(
        Turn(output=[reasoning("Need the weather."), function_call("get_weather", {"city": "Paris"})])
    )
    resp = client.responses.create(
        model="gpt-5.5",
        input=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "weather in Paris?"}],
        tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        reasoning={"effort": "low", "summary": "auto"},
    )  # fmt: skip
    kinds = [item.type for item in resp.output]
    assert kinds == ["reasoning", "function_call"]
    call = resp.output[1]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert resp.output[0].encrypted_content
    assert resp.output[0].summary[0].text == "Need the weather."
    sent = fake.responses_requests[-1].body
    assert sent["input"][0]["role"] == "developer"  # system items are refused by the backend
    assert "reasoning.encrypted_content" in sent["include"]
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["reasoning"] == {"effort": "low", "summary": "auto"}


def test_multi_turn_replay_reaches_backend_in_accepted_shape(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.enqueue(Turn(output=[reasoning("Think first."), function_call("exec_command", {"cmd": "echo hi"})]))
    first = client.responses.create(model="gpt-5.5", input="run echo hi", tools=[
        {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}])  # fmt: skip
    rs, call = first.output
    fake.enqueue(Turn(output=[text("It printed hi.")]))
    replay = [
        {"type": "message", "id": "msg_client_1", "role": "user", "content": [{"type": "input_text", "text": "run echo hi"}]},
        rs.model_dump(exclude_none=True),
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "id": "fco_1", "call_id": call.call_id, "output": "hi\n"},
    ]  # fmt: skip
    second = client.responses.create(model="gpt-5.5", input=replay)
    assert second.output_text == "It printed hi."
    sent = fake.responses_requests[-1].body["input"]
    assert [i["type"] for i in sent] == ["message", "reasoning", "function_call", "function_call_output"]
    assert "id" not in sent[0] and "id" not in sent[2] and "id" not in sent[3]
    assert sent[1]["encrypted_content"] == rs.encrypted_content
    assert rs.encrypted_content in fake.accepted_encrypted_content
    assert sent[3]["call_id"] == call.call_id and sent[3]["output"] == "hi\n"


def test_prompt_cache_key_is_stable_per_conversation(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(), Turn(), Turn())
    client.responses.create(model="gpt-5.5", input="first question", instructions="sys")
    client.responses.create(model="gpt-5.5", input=[{"role": "user", "content": "first question"},
                                                    {"role": "assistant", "content": "answer"},
                                                    {"role": "user", "content": "second"}], instructions="sys")  # fmt: skip
    client.responses.create(model="gpt-5.5", input="hi", extra_headers={"session_id": "sess-42"})
    keys = [r.body["prompt_cache_key"] for r in fake.responses_requests]
    assert keys[0] == keys[1]
    assert keys[2] == "sess-42"


def test_client_prompt_cache_key_and_passthrough_fields(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn())
    client.responses.create(
        model="gpt-5.5", input="hi", prompt_cache_key="mine", parallel_tool_calls=False, tool_choice="none",
        text={"format": {"type": "json_object"}, "verbosity": "low"}, service_tier="priority", metadata={"a": "b"},
    )  # fmt: skip
    sent = fake.responses_requests[-1].body
    assert sent["prompt_cache_key"] == "mine"
    assert sent["parallel_tool_calls"] is False and sent["tool_choice"] == "none"
    assert sent["text"] == {"format": {"type": "json_object"}, "verbosity": "low"}
    assert sent["service_tier"] == "priority"
    assert "metadata" not in sent


def test_previous_response_id_is_expanded_and_unknown_ones_refused(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.enqueue(Turn(output=[text("first answer")]), Turn(output=[text("second answer")]))
    first = client.responses.create(model="gpt-5.5", input="hi", store=True)
    second = client.responses.create(model="gpt-5.5", input="and?", previous_response_id=first.id)
    assert second.output_text == "second answer"
    sent = fake.responses_requests[-1].body["input"]
    assert [i["role"] for i in sent] == ["user", "assistant", "user"]
    with pytest.raises(openai.BadRequestError, match="resp_123") as exc:
        client.responses.create(model="gpt-5.5", input="hi", previous_response_id="resp_123")
    assert exc.value.body["param"] == "previous_response_id"
    assert len(fake.responses_requests) == 2


def test_incomplete_is_reported_not_hidden(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("partial")], incomplete="max_output_tokens"))
    resp = client.responses.create(model="gpt-5.5", input="hi")
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"


# --- faults: the client sees an error, never a clean success -----------------------------------


def test_upstream_429_keeps_retry_after(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn.usage_limit(resets_in_seconds=90))
    with pytest.raises(openai.RateLimitError) as exc:
        client.responses.create(model="gpt-5.5", input="hi")
    assert exc.value.response.headers["retry-after"] in ("89", "90")
    assert exc.value.body["code"] == "usage_limit_reached"


def test_upstream_500(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn.http_error(500, "boom"))
    with pytest.raises(openai.InternalServerError, match="boom"):
        client.responses.create(model="gpt-5.5", input="hi")


def test_upstream_400_detail_becomes_openai_error(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn.context_length_exceeded())
    with pytest.raises(openai.APIError):
        client.responses.create(model="gpt-5.5", input="hi")


def test_response_failed_mid_stream(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("half")], fail={"code": "server_error", "message": "backend broke"}))
    with (
        pytest.raises(Exception, match=r"response\.completed|backend broke"),
        client.responses.stream(model="gpt-5.5", input="hi") as s,
    ):
        s.get_final_response()
    fake.enqueue(Turn(output=[text("half")], fail={"code": "server_error", "message": "backend broke"}))
    with pytest.raises(openai.APIError, match="backend broke"):
        client.responses.create(model="gpt-5.5", input="hi")


def test_connection_cut_mid_stream(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("this will be cut", chunks=6)], cut_after=4))
    with pytest.raises(openai.APIError), client.responses.stream(model="gpt-5.5", input="hi") as s:
        for _ in s:
            pass
    fake.enqueue(Turn(output=[text("this will be cut", chunks=6)], cut_after=4))
    with pytest.raises(openai.APIError):
        client.responses.create(model="gpt-5.5", input="hi")


def test_silent_upstream_gets_keepalives_not_a_timeout(proxy: Proxy, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("after a long think")], stall=1.2))
    with httpx.stream("POST", proxy.v1 + "/responses", json={"model": "gpt-5.5", "input": "hi", "stream": True},
                      trust_env=False, timeout=30) as r:  # fmt: skip
        body = r.read().decode()
    assert body.count(": keepalive") >= 2  # proxy runs with --heartbeat 0.3
    assert "response.completed" in body and "after a long think" in body


def test_websocket_upgrade_gets_426_in_the_openai_envelope(proxy: Proxy, fake: FakeBackend) -> None:
    headers = {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "openai-beta": "responses_websockets=2026-02-06"}  # fmt: skip
    r = httpx.get(proxy.v1 + "/responses", headers=headers, trust_env=False, timeout=30)
    assert r.status_code == 426
    assert r.json()["error"]["code"] == "websocket_not_supported" and "HTTP" in r.json()["error"]["message"]
    plain = httpx.get(proxy.v1 + "/responses", trust_env=False, timeout=30)
    assert plain.status_code == 405  # a GET that is not an upgrade is still just the wrong method
    assert fake.requests == []
