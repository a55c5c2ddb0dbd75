"""/v1/chat/completions through the real proxy with the official openai SDK and the fake Codex backend."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, reasoning, text

from .conftest import Proxy

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture
def client(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=proxy.v1,
        api_key="unused",
        max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=30),
    )


def test_plain_text_non_streaming_with_usage(client: openai.OpenAI, fake: FakeBackend) -> None:
    usage = {"input_tokens": 42, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 7,
             "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 49}  # fmt: skip
    fake.enqueue(Turn(output=[text("Bonjour.")], usage=usage))
    done = client.chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hello"}],
        max_tokens=100,
        temperature=0.3,
    )
    assert done.choices[0].message.content == "Bonjour."
    assert done.choices[0].finish_reason == "stop"
    assert done.model == "gpt-5.5"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (42, 7, 49)
    assert done.usage.prompt_tokens_details.cached_tokens == 10
    assert done.usage.completion_tokens_details.reasoning_tokens == 3
    sent = fake.responses_requests[-1].body
    assert sent["input"][0]["role"] == "developer"
    assert not {"max_tokens", "max_output_tokens", "temperature"} & set(sent)


def test_plain_text_streaming_with_usage_chunk(client: openai.OpenAI, fake: FakeBackend) -> None:
    usage = {"input_tokens": 11, "output_tokens": 5, "total_tokens": 16}
    fake.enqueue(Turn(output=[text("one two three", chunks=3)], usage=usage))
    stream = client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_parallel_tool_calls_accumulate_then_tool_results_round_trip(
    client: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.enqueue(
        Turn(output=[
            reasoning("Two cities."),
            function_call("get_weather", {"city": "Paris"}, call_id="call_paris"),
            function_call("get_weather", {"city": "Tokyo, Japan"}, call_id="call_tokyo"),
        ])
    )  # fmt: skip
    messages: list[dict] = [{"role": "user", "content": "weather in Paris and Tokyo?"}]
    with client.chat.completions.stream(model="gpt-5.5", messages=messages, tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls
    assert [c.id for c in calls] == ["call_paris", "call_tokyo"]
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Tokyo, Japan"}]
    sent = fake.responses_requests[-1].body
    assert sent["tools"][0]["name"] == "get_weather" and sent["tools"][0]["type"] == "function"

    fake.enqueue(Turn(output=[text("Paris 18C, Tokyo 22C.")]))
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_tokyo", "content": "22C"},
        {"role": "tool", "tool_call_id": "call_paris", "content": [{"type": "text", "text": "18C"}]},
    ]
    answer = client.chat.completions.create(model="gpt-5.5", messages=messages, tools=[WEATHER])
    assert answer.choices[0].message.content == "Paris 18C, Tokyo 22C."
    items = fake.responses_requests[-1].body["input"]
    calls_sent = [i for i in items if i["type"] == "function_call"]
    outputs = [i for i in items if i["type"] == "function_call_output"]
    assert [c["call_id"] for c in calls_sent] == ["call_paris", "call_tokyo"]
    assert {o["call_id"]: o["output"] for o in outputs} == {"call_tokyo": "22C", "call_paris": "18C"}


def test_image_reaches_backend_as_input_image(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("A pixel.")]))
    client.chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
        ]}],
    )  # fmt: skip
    parts = fake.responses_requests[-1].body["input"][0]["content"]
    assert parts[0] == {"type": "input_text", "text": "what is this?"}
    assert (
        parts[1]["type"] == "input_image" and parts[1]["image_url"] == PIXEL and parts[1]["detail"] == "low"
    )


def test_json_schema_response_format_becomes_text_format(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text('{"answer": 4}')]))
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}  # fmt: skip
    done = client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "2+2"}],
        response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert json.loads(done.choices[0].message.content) == {"answer": 4}
    fmt = fake.responses_requests[-1].body["text"]["format"]
    assert fmt == {"type": "json_schema", "name": "sum", "schema": schema, "strict": True}


def test_n_greater_than_one_is_a_clear_400(client: openai.OpenAI, fake: FakeBackend) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], n=2)
    assert exc.value.body["param"] == "n"
    assert fake.responses_requests == []


def test_failure_mid_stream_raises_not_stop(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(
        Turn(output=[text("partial answer", chunks=4)], fail={"code": "server_error", "message": "melted"})
    )
    stream = client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="melted"):
        list(stream)


def test_cut_stream_raises(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("partial answer", chunks=6)], cut_after=5))
    with pytest.raises(openai.APIError):
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])


def test_upstream_429_is_rate_limit_error(client: openai.OpenAI, fake: FakeBackend) -> None:
    fake.enqueue(Turn.usage_limit(resets_in_seconds=30))
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert int(exc.value.response.headers["retry-after"]) in (29, 30)


def test_models_listing(client: openai.OpenAI, fake: FakeBackend) -> None:
    ids = [m.id for m in client.models.list(extra_query={"refresh": "1"})]
    assert ids and all(isinstance(i, str) for i in ids)
    hidden = [m["slug"] for m in fake.models if m.get("visibility") != "list"]
    assert hidden and not set(hidden) & set(ids)
    assert [m.id for m in client.models.list()] == ids  # cached: one upstream call
    assert len([r for r in fake.requests if r.path.endswith("/models")]) == 1


def test_stop_sequence_ends_the_stream_without_waiting_for_the_model(proxy: Proxy, fake: FakeBackend) -> None:
    import time

    fake.enqueue(
        Turn(output=[text("Thought: go. Observation: the rest is never wanted " * 3, chunks=12)], delay=0.5)
    )
    started = time.monotonic()
    client = openai.OpenAI(
        base_url=proxy.v1, api_key="x", max_retries=0, http_client=httpx.Client(trust_env=False)
    )
    chunks = list(client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "go"}],
                                                 stream=True, stop=["Observation:"]))  # fmt: skip
    elapsed = time.monotonic() - started
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Thought: go. "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert elapsed < 4  # the upstream takes ~8 s to finish its answer; the client does not wait for it
