"""No body, however malformed, makes a request translator fail: it translates, or it is a typed 4xx.

Hypothesis builds JSON values shaped like the three families' requests (the right keys with values of
any JSON type, nested), plus arbitrary JSON; each must translate to a body that encodes as UTF-8, or
raise ProxyError with a 4xx status. Through the real proxy: lone surrogates, unhashable block types,
`include: true` and over-deep nesting get a 4xx in the family's envelope, and later turns still work.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_api_proxy.core import cache_health, models
from codex_api_proxy.core.conversations import conversation_headers
from codex_api_proxy.core.errors import ProxyError
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text
from codex_api_proxy.translate import anthropic, chat, responses
from codex_api_proxy.translate.base import RequestContext

from .conftest import Proxy

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
BLOCK_TYPES = [
    "text",
    "image",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "document",
    "input_text",
    "input_image",
    "function_call",
    "function_call_output",
    "message",
    "reasoning",
    "item_reference",
    "image_url",
    "tool_reference",
    "web_search_tool_result",
]


def shaped(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with some of these keys (each value from its strategy or any JSON) and maybe others."""
    return st.fixed_dictionaries(
        {}, optional={k: v | json_values for k, v in keys.items()}
    ) | st.dictionaries(st.text(max_size=8), json_values, max_size=3)


blocks = st.lists(
    shaped(
        {
            "type": st.sampled_from(BLOCK_TYPES),
            "text": st.text(max_size=10),
            "content": json_values,
            "id": st.text(max_size=5),
            "name": st.text(max_size=5),
            "input": json_values,
            "source": json_values,
            "tool_use_id": st.text(max_size=5),
        }
    ),
    max_size=3,
)
messages = st.lists(
    shaped(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool", "developer"]),
            "content": st.text(max_size=10) | blocks,
            "tool_calls": json_values,
        }
    ),
    max_size=3,
)
tools = st.lists(
    shaped(
        {
            "type": st.sampled_from(["function", "custom", "web_search_20250305"]),
            "name": st.text(max_size=5),
            "function": json_values,
            "input_schema": json_values,
            "parameters": json_values,
        }
    ),
    max_size=2,
)
BODIES = {
    "chat": shaped(
        {
            "model": st.just("gpt-5.5"),
            "messages": messages,
            "tools": tools,
            "stream": st.booleans(),
            "response_format": json_values,
            "tool_choice": json_values,
            "stop": json_values,
        }
    ),
    "responses": shaped(
        {
            "model": st.just("gpt-5.5"),
            "input": st.text(max_size=10) | blocks,
            "include": json_values,
            "tools": tools,
            "reasoning": json_values,
            "instructions": json_values,
            "text": json_values,
            "previous_response_id": json_values,
            "prompt_cache_key": json_values,
            "stream": json_values,
        }
    ),
    "anthropic": shaped(
        {
            "model": st.just("claude-sonnet-4-5"),
            "messages": messages,
            "system": json_values,
            "tools": tools,
            "max_tokens": st.integers(),
            "thinking": json_values,
            "output_config": json_values,
            "stop_sequences": json_values,
            "tool_choice": json_values,
        }
    ),
}
MODULES = {"chat": chat, "responses": responses, "anthropic": anthropic}


def translate(family: str, body: Any) -> None:
    """The translator, then what the gateway reads of its output before the request goes upstream
    (cache health's prefix, the conversation headers, the effort clamp): none of it may fail."""
    ctx = RequestContext(headers={})
    try:
        out = MODULES[family].to_upstream(body, ctx)
    except ProxyError as error:
        assert 400 <= error.status < 500, error
        return
    json.dumps(out, ensure_ascii=False).encode()  # what goes upstream always encodes
    key = out.get("prompt_cache_key")
    cache_health.CacheHealth().note_request(key, out, {})
    assert all(isinstance(v, str) for v in conversation_headers({}, key).values())
    models.clamp_body_effort(out, ("low", "medium", "high"))
    assert isinstance(str(out.get("model") or ""), str)


@pytest.mark.parametrize("family", list(BODIES))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_body_translates_or_is_a_client_error(family: str, data: st.DataObject) -> None:
    translate(family, data.draw(BODIES[family] | json_values))


@settings(max_examples=200, deadline=None)
@given(body=BODIES["anthropic"])
def test_any_count_tokens_body_counts_or_is_a_client_error(body: Any) -> None:
    try:
        assert anthropic.count_tokens(body, {}) >= 0
    except ProxyError as error:
        assert 400 <= error.status < 500


# ---- through the real proxy ---------------------------------------------------------------------------

LONE = '"tool output with a lone surrogate \\ud800 in it"'


def post_raw(http: httpx.Client, path: str, raw: str) -> httpx.Response:
    return http.post(path, content=raw.encode(), headers={"content-type": "application/json"})


def test_lone_surrogates_are_repaired_and_later_turns_work(http: httpx.Client, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("fine")]), Turn(output=[text("still fine")]))
    raw = (
        '{"model": "gpt-5.5", "max_tokens": 50, "messages": [{"role": "user", "content": "run it"}, '
        '{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}, '
        '{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": '
        + LONE
        + "}]}]}"
    )
    r = post_raw(http, "/v1/messages", raw)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "fine"
    assert "\ufffd" in json.dumps(fake.responses_requests[-1].body, ensure_ascii=False)
    r = post_raw(
        http,
        "/v1/chat/completions",
        '{"model": "gpt-5.5", "messages": [{"role": "user", "content": ' + LONE + "}]}",
    )
    assert r.status_code == 200
    r = post_raw(
        http,
        "/v1/messages/count_tokens",
        '{"model": "gpt-5.5", "messages": [{"role": "user", "content": ' + LONE + "}]}",
    )
    assert r.status_code == 200 and r.json()["input_tokens"] > 0


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        (
            "/v1/messages",
            '{"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": ["x"]}]}]}',
        ),
        (
            "/v1/messages",
            '{"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": {"a": 1}}]}]}',
        ),
        ("/v1/responses", '{"model": "gpt-5.5", "input": "hi", "include": true}'),
        (
            "/v1/chat/completions",
            '{"model": "gpt-5.5", "messages": [{"role": "user", "content": [{"type": 7}]}]}',
        ),
        (
            "/v1/messages",
            '{"model": "gpt-5.5", "max_tokens": 5, "messages": ' + "[" * 5000 + "]" * 5000 + "}",
        ),
        ("/v1/chat/completions", '{"model": "gpt-5.5", "messages": 3}'),
        ("/v1/responses", '{"model": "gpt-5.5", "input": "hi", "tools": true}'),
        ("/v1/responses", '{"model": "gpt-5.5", "input": "hi", "tools": 3}'),
        ("/v1/responses", '{"model": "gpt-5.5", "input": "hi", "tools": [true]}'),
        ("/v1/responses", '{"model": "gpt-5.5", "input": "hi", "prompt_cache_key": 7}'),
        ("/v1/responses/compact", '{"model": "gpt-5.5", "input": "hi", "tools": 1.5}'),
    ],
)
def test_bad_bodies_are_a_4xx_in_the_family_envelope(
    http: httpx.Client, fake: FakeBackend, path: str, raw: str
) -> None:
    r = post_raw(http, path, raw)
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    assert fake.responses_requests == []


def test_a_flow_retargeted_then_failing_keeps_the_anthropic_envelope(
    http: httpx.Client, fake: FakeBackend
) -> None:
    fake.enqueue(Turn.http_error(500, "boom"))
    r = http.post(
        "/v1/messages",
        json={"model": "gpt-5.5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 500 and r.json()["type"] == "error"


# What the gateway reads of a Responses body before and after translation, each with any JSON value.
RESPONSES_FIELDS = {
    "model": st.just("gpt-5.5") | json_values,
    "input": st.just("hi") | blocks | json_values,
    "tools": tools | json_values,
    "instructions": json_values,
    "prompt_cache_key": json_values,
    "stream": st.booleans() | json_values,
    "reasoning": st.fixed_dictionaries({"effort": json_values}) | json_values,
    "store": json_values,
}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.fixed_dictionaries({}, optional=RESPONSES_FIELDS),
    path=st.sampled_from(["/v1/responses", "/v1/responses/compact"]),
)
def test_any_responses_body_through_the_proxy_is_never_a_5xx(
    proxy: Proxy, path: str, body: dict[str, Any]
) -> None:
    """Through the real proxy: every shape of the fields the gateway and cache health read is answered
    (by the fake backend) or refused with a 4xx in the OpenAI envelope, never a 500."""
    raw = json.dumps(body).encode()  # Infinity included: Python's parser takes it too
    r = httpx.post(
        proxy.url + path,
        content=raw,
        headers={"content-type": "application/json"},
        timeout=30,
        trust_env=False,
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error"]["type"] == "invalid_request_error", r.text
