"""Upstream errors keep their meaning through the real proxy, in every client dialect: a usage limit stays
`usage_limit_reached` with its plan, reset time and rate-limit headers (OpenAI Responses and Chat), and is
an Anthropic `rate_limit_error` that says when the limit resets."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from codex_api_proxy.core.errors import from_upstream
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import Proxy


def check_usage_limit_body(error: dict, headers: httpx.Headers, resets_in: int) -> None:
    assert error["type"] == "usage_limit_reached" and error["code"] == "usage_limit_reached"
    assert error["plan_type"] == "plus"
    assert isinstance(error["resets_at"], int) and abs(error["resets_at"] - (time.time() + resets_in)) < 60
    assert error["resets_in_seconds"] == resets_in
    assert resets_in - 60 <= int(headers["retry-after"]) <= resets_in
    assert headers["x-codex-primary-used-percent"] == "100.0"
    assert headers["x-codex-secondary-window-minutes"] == "10080"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_usage_limit_keeps_type_plan_reset_and_headers(
    http: httpx.Client, fake: FakeBackend, stream: bool
) -> None:
    fake.enqueue(Turn.usage_limit(resets_in_seconds=600))
    r = http.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi", "stream": stream})
    assert r.status_code == 429
    check_usage_limit_body(r.json()["error"], r.headers, 600)


def test_chat_usage_limit_keeps_type_plan_reset_and_headers(proxy: Proxy, fake: FakeBackend) -> None:
    fake.enqueue(Turn.usage_limit(resets_in_seconds=900))
    client = openai.OpenAI(base_url=proxy.v1, api_key="unused", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=30))  # fmt: skip
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    check_usage_limit_body(exc.value.body, exc.value.response.headers, 900)
    assert len(fake.responses_requests) == 1  # the SDK did not retry (max_retries=0) and neither did we


def test_anthropic_usage_limit_is_a_rate_limit_error_with_the_reset_time(
    proxy: Proxy, fake: FakeBackend
) -> None:
    fake.enqueue(Turn.usage_limit(resets_in_seconds=2 * 3600))
    client = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0,
                                 http_client=httpx2.Client(trust_env=False, timeout=30))  # fmt: skip
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(model="gpt-5.5", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    body = exc.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    reset = time.strftime("%H:", time.gmtime(time.time() + 2 * 3600))
    message = body["error"]["message"]
    assert (
        "usage limit" in message.lower() and "resets at" in message and reset in message and "plus" in message
    )
    assert exc.value.response.headers["x-codex-primary-used-percent"] == "100.0"


def test_usage_limit_inside_a_stream_keeps_its_fields(http: httpx.Client, fake: FakeBackend) -> None:
    resets_at = int(time.time()) + 300
    fail = {"code": "usage_limit_reached", "message": "The usage limit has been reached", "plan_type": "pro",
            "resets_at": resets_at}  # fmt: skip
    fake.enqueue(Turn(output=[text("partial")], fail=fail))
    r = http.post("/v1/chat/completions", json={"model": "gpt-5.5", "stream": True,
                                                "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert r.status_code == 200
    last = json.loads([line for line in r.text.splitlines() if line.startswith("data: {")][-1][6:])
    assert last["error"]["type"] == last["error"]["code"] == "usage_limit_reached"
    assert last["error"]["plan_type"] == "pro" and last["error"]["resets_at"] == resets_at


def test_other_upstream_errors_keep_their_status_and_message(http: httpx.Client, fake: FakeBackend) -> None:
    fake.enqueue(Turn.http_error(503, "try later", headers={"retry-after": "7"}))
    r = http.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"})
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert r.json()["error"]["message"] == "try later" and r.json()["error"]["type"] == "server_error"


def test_reset_time_is_kept_in_both_forms() -> None:
    at = int(time.time()) + 1800
    only_at = from_upstream(
        429, json.dumps({"error": {"type": "usage_limit_reached", "resets_at": at}}).encode()
    )
    assert only_at.openai_body()["error"]["resets_at"] == at
    assert 1790 <= only_at.openai_body()["error"]["resets_in_seconds"] <= 1800
    assert 1790 <= only_at.retry_after <= 1800
    only_in = from_upstream(429, b'{"error": {"code": "usage_limit_reached", "resets_in_seconds": 60}}')
    body = only_in.openai_body()["error"]
    assert body["type"] == "usage_limit_reached" and isinstance(body["resets_at"], int)
    plain = from_upstream(400, b'{"detail": "Instructions are not valid"}')
    assert plain.openai_body() == {"error": {"message": "Instructions are not valid", "type": "invalid_request_error",
                                             "param": None, "code": None}}  # fmt: skip
    assert plain.anthropic_body()["error"]["message"] == "Instructions are not valid"
