"""API-key mode through the real proxy: auth.json holds an OPENAI_API_KEY, so Chat Completions and
Responses go unchanged to the OpenAI API (the fake's `/v1`), Anthropic Messages are translated to its
Responses API, and an upstream 401 is the client's answer (nothing to refresh, nothing to retry)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import httpx2
import openai
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Recorded, Turn, function_call, text

from .conftest import Proxy, start_proxy, write_auth

API_KEY = "sk-test-apikey-mode-0123456789"
CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def openai_api() -> Iterator[FakeBackend]:
    with FakeBackend(access_tokens=set(), api_keys={API_KEY}) as fb:  # no ChatGPT token would work
        yield fb


@pytest.fixture
def api(openai_api: FakeBackend) -> FakeBackend:
    openai_api.clear()
    openai_api.api_keys = {API_KEY}
    return openai_api


@pytest.fixture(scope="module")
def api_proxy(openai_api: FakeBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("apikey")
    write_auth(tmp / "codex-home", api_key=API_KEY)  # ChatGPT tokens too: the API key wins
    p = start_proxy(tmp, openai_api, extra_args=["--heartbeat", "0.3"])
    yield p
    p.stop()


@pytest.fixture
def client(api_proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=api_proxy.v1, api_key="unused-locally", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=30))  # fmt: skip


@pytest.fixture
def claude(api_proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=api_proxy.url, api_key="unused-locally", max_retries=0,
                               http_client=httpx2.Client(trust_env=False, timeout=30))  # fmt: skip


def only_request(fb: FakeBackend, path: str) -> Recorded:
    """The one request the fake got, which must be on the OpenAI API with the auth.json key."""
    assert [r.path for r in fb.requests] == [path]
    rec = fb.requests[0]
    assert rec.headers["authorization"] == f"Bearer {API_KEY}"
    assert "chatgpt-account-id" not in rec.headers
    return rec


# ---- Chat Completions: forwarded unchanged ----------------------------------------------------------


def test_chat_non_streaming_is_forwarded_unchanged(client: openai.OpenAI, api: FakeBackend) -> None:
    api.enqueue(
        Turn(output=[text("Bonjour.")], usage={"input_tokens": 12, "output_tokens": 3, "total_tokens": 15})
    )
    request = {**CHAT, "temperature": 0.3, "max_tokens": 50, "n": 1, "seed": 7, "user": "u-1",
               "metadata": {"k": "v"}, "logit_bias": {"50256": -100}}  # fmt: skip
    done = client.chat.completions.create(**request)
    assert done.choices[0].message.content == "Bonjour." and done.object == "chat.completion"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (12, 3)
    assert only_request(api, "/v1/chat/completions").body == request


def test_chat_body_bytes_are_forwarded_as_sent(api_proxy: Proxy, api: FakeBackend) -> None:
    # odd spacing, an escaped and a raw non-ASCII character, a float that json.dumps would rewrite
    raw = (
        b'{ "model":"gpt-5.5", "messages":[{"role":"user","content":"\\u00e9 \xe2\x98\x95"}], "top_p":1.0E0}'
    )
    headers = {"content-type": "application/json"}
    r = httpx.post(
        api_proxy.v1 + "/chat/completions", content=raw, headers=headers, trust_env=False, timeout=30
    )
    assert r.status_code == 200, r.text
    assert only_request(api, "/v1/chat/completions").raw == raw


def test_chat_stream_with_tool_calls_and_usage(client: openai.OpenAI, api: FakeBackend) -> None:
    api.enqueue(
        Turn(output=[text("Checking.", chunks=2), function_call("get_weather", {"city": "Paris"}, "call_1")])
    )
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
    chunks = list(client.chat.completions.create(**request))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Checking."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert only_request(api, "/v1/chat/completions").body == request

    api.clear()
    api.enqueue(Turn(output=[function_call("get_weather", {"city": "Paris"}, "call_1")]))
    with client.chat.completions.stream(model="gpt-5.5", messages=CHAT["messages"]) as stream:
        call = stream.get_final_completion().choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_chat_stream_is_relayed_chunk_by_chunk(api_proxy: Proxy, api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("one two three four five six", chunks=6)], delay=0.4))  # ~9 chunks
    started, first = time.monotonic(), None
    with httpx.stream("POST", api_proxy.v1 + "/chat/completions", json={**CHAT, "stream": True},
                      trust_env=False, timeout=30) as r:  # fmt: skip
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in r.iter_lines():
            if line.startswith("data: {") and first is None:
                first = time.monotonic() - started
            lines.append(line)
        total = time.monotonic() - started
    assert lines[-1] == "data: [DONE]" or lines[-2:] == ["data: [DONE]", ""]
    assert first is not None and total > 2.8
    assert first < total - 2.4  # the first chunk came long before the upstream finished


# ---- Responses: forwarded unchanged -----------------------------------------------------------------


def test_responses_stream_and_not_are_forwarded_unchanged(client: openai.OpenAI, api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("streamed answer", chunks=3)]))
    with client.responses.stream(model="gpt-5.5", input="hi", max_output_tokens=50, temperature=0.2) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "streamed answer" and final.output_text == "streamed answer"
    sent = only_request(api, "/v1/responses").body
    assert sent == {
        "model": "gpt-5.5",
        "input": "hi",
        "max_output_tokens": 50,
        "temperature": 0.2,
        "stream": True,
    }

    api.clear()
    api.enqueue(Turn(output=[text("plain answer")]))
    request = {"model": "gpt-5.5", "input": "hi", "max_output_tokens": 20, "top_p": 0.5,
               "metadata": {"a": "b"}, "previous_response_id": "resp_prev"}  # fmt: skip
    resp = client.responses.create(**request)
    assert resp.output_text == "plain answer" and resp.status == "completed"
    assert only_request(api, "/v1/responses").body == request  # no store/stream forced, input kept a string


# ---- Anthropic Messages: translated to the Responses API -----------------------------------------------


def test_messages_are_translated_to_the_responses_api(claude: anthropic.Anthropic, api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("Hello from the API.")]))
    ask = {"model": "claude-sonnet-4-6", "max_tokens": 1024, "system": "Be nice.",
           "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    msg = claude.messages.create(**ask)
    assert msg.type == "message" and msg.content[0].text == "Hello from the API."
    assert msg.stop_reason == "end_turn" and msg.model == "claude-sonnet-4-6"
    sent = only_request(api, "/v1/responses").body
    assert sent["model"].startswith("gpt-") and sent["instructions"] == "Be nice."
    assert sent["input"][0]["role"] == "user" and "messages" not in sent and "system" not in sent

    api.clear()
    api.enqueue(Turn(output=[text("Streamed too.", chunks=3)]))
    with claude.messages.stream(**ask) as stream:
        assert "".join(stream.text_stream) == "Streamed too."
        assert stream.get_final_message().stop_reason == "end_turn"
    assert only_request(api, "/v1/responses").body["stream"] is True


# ---- models, errors, faults ----------------------------------------------------------------------------


def test_models_come_from_the_openai_api(client: openai.OpenAI, api: FakeBackend) -> None:
    ids = [m.id for m in client.models.list(extra_query={"refresh": "1"})]
    assert ids == [m["slug"] for m in api.models]  # the API's listing, hidden Codex entries included
    only_request(api, "/v1/models")


def test_upstream_401_is_passed_on_once_without_refresh(
    client: openai.OpenAI, claude: anthropic.Anthropic, api: FakeBackend
) -> None:
    api.api_keys = {"sk-some-other-key-0123456789"}
    with pytest.raises(openai.AuthenticationError) as exc:
        client.chat.completions.create(**CHAT)
    assert exc.value.status_code == 401 and exc.value.body["code"] == "invalid_api_key"
    assert "Incorrect API key provided" in exc.value.body["message"]
    only_request(api, "/v1/chat/completions")  # one attempt, no token refresh call

    for call in (
        lambda: list(client.responses.create(model="gpt-5.5", input="hi", stream=True)),
        lambda: claude.messages.create(
            model="gpt-5.5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ),
    ):
        api.clear()
        with pytest.raises((openai.AuthenticationError, anthropic.AuthenticationError)):
            call()
        only_request(api, "/v1/responses")  # one attempt, no token refresh call


def test_cut_or_failed_upstream_stream_makes_the_sdk_raise(client: openai.OpenAI, api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("this will be cut", chunks=6)], cut_after=4))
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(**CHAT, stream=True))
    api.enqueue(Turn(output=[text("this will be cut", chunks=6)], cut_after=4))
    with pytest.raises(openai.APIError), client.responses.stream(model="gpt-5.5", input="hi") as s:
        s.get_final_response()
    api.enqueue(Turn(output=[text("partial")], fail={"code": "server_error", "message": "melted"}))
    with pytest.raises(openai.APIError, match="melted"):
        list(client.chat.completions.create(**CHAT, stream=True))
    # closed with no answer at all: a reused connection is retried once, fresh, before it surfaces
    api.enqueue(Turn(cut_after=0), Turn(cut_after=0))
    with pytest.raises(openai.APIError):
        client.chat.completions.create(**CHAT)
    api.clear()


def test_silent_upstream_gets_sse_comment_keepalives(api_proxy: Proxy, api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("after a long think", chunks=1)], stall=1.2))
    with httpx.stream("POST", api_proxy.v1 + "/chat/completions", json={**CHAT, "stream": True},
                      trust_env=False, timeout=30) as r:  # fmt: skip
        body = r.read().decode()
    assert body.count(": keepalive") >= 2  # --heartbeat 0.3
    assert "after a long think" in body and body.rstrip().endswith("data: [DONE]")
