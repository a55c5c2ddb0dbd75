"""/v1/messages through the real proxy with the official anthropic SDK and the fake Codex backend."""

from __future__ import annotations

import anthropic
import httpx
import httpx2
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, reasoning, text

from .conftest import Proxy

BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
        "required": ["command"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def client(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=proxy.url,
        api_key="unused",
        max_retries=0,
        http_client=httpx2.Client(trust_env=False, timeout=30),
    )


def ask(**kw):
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        **kw,
    }


def test_stream_text(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("Hello from GPT.", chunks=4)]))
    with client.messages.stream(**ask(system="Be nice.")) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Hello from GPT."
    assert final.content[0].type == "text" and final.content[0].text == "Hello from GPT."
    assert final.stop_reason == "end_turn"
    assert final.model == "claude-sonnet-4-6"
    assert final.usage.output_tokens > 0
    sent = fake.responses_requests[-1].body
    assert sent["instructions"] == "Be nice."
    assert sent["model"].startswith("gpt-")
    assert "max_tokens" not in sent and "max_output_tokens" not in sent


def test_stream_thinking_text_and_tool_use(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[
        reasoning("Let me list the files."),
        text("I'll run ls."),
        function_call("Bash", {"command": "ls -la", "description": "List files"}, call_id="call_ls"),
    ]))  # fmt: skip
    with client.messages.stream(
        **ask(tools=[BASH], thinking={"type": "enabled", "budget_tokens": 8000})
    ) as stream:
        final = stream.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "Let me list the files."
    assert final.content[0].signature
    assert final.content[2].input == {"command": "ls -la", "description": "List files"}
    assert final.content[2].id == "call_ls" and final.content[2].name == "Bash"
    assert final.stop_reason == "tool_use"
    sent = fake.responses_requests[-1].body
    assert sent["reasoning"]["effort"] and "reasoning.encrypted_content" in sent["include"]
    assert "$schema" not in sent["tools"][0]["parameters"]

    # the next turn echoes the thinking block: the backend gets its reasoning item back
    fake.enqueue(Turn(output=[text("Done.")]))
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_ls", "content": "a.txt\nb.txt"}],
        },
    ]
    client.messages.create(**ask(messages=history, tools=[BASH]))
    items = fake.responses_requests[-1].body["input"]
    assert [i["type"] for i in items] == [
        "message",
        "reasoning",
        "message",
        "function_call",
        "function_call_output",
    ]
    assert items[1]["encrypted_content"] in fake.accepted_encrypted_content
    assert items[4] == {"type": "function_call_output", "call_id": "call_ls", "output": "a.txt\nb.txt"}


def test_two_parallel_tool_uses_with_exact_inputs(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[
        function_call("Bash", {"command": "echo A"}, call_id="call_a"),
        function_call("Bash", {"command": "echo 'B \"quoted\"'"}, call_id="call_b"),
    ]))  # fmt: skip
    with client.messages.stream(**ask(tools=[BASH])) as stream:
        final = stream.get_final_message()
    assert [(b.id, b.input) for b in final.content] == [
        ("call_a", {"command": "echo A"}),
        ("call_b", {"command": "echo 'B \"quoted\"'"}),
    ]
    assert final.stop_reason == "tool_use"


def test_non_streaming_equivalents(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    fake.enqueue(
        Turn(
            output=[
                reasoning("Hmm."),
                text("Running."),
                function_call("Bash", {"command": "pwd"}, call_id="c1"),
            ]
        )
    )
    msg = client.messages.create(**ask(tools=[BASH], thinking={"type": "adaptive"}))
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[2].input == {"command": "pwd"}
    assert msg.stop_reason == "tool_use"
    assert msg.usage.input_tokens >= 0 and msg.usage.output_tokens > 0


def test_count_tokens_is_local_and_real(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    small = client.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
    )
    big = client.messages.count_tokens(
        model="claude-sonnet-4-6", system="You are a careful assistant. " * 50,
        messages=[{"role": "user", "content": "hi " * 300}], tools=[BASH],
    )  # fmt: skip
    assert 0 < small.input_tokens < 20
    assert big.input_tokens > small.input_tokens + 500
    assert fake.requests == []


@pytest.mark.parametrize(
    ("turn", "error"),
    [
        (Turn.http_error(400, "bad request body"), anthropic.BadRequestError),
        (Turn.usage_limit(resets_in_seconds=5), anthropic.RateLimitError),
        (Turn.http_error(500, "boom"), anthropic.InternalServerError),
        (Turn.http_error(529, "overloaded"), anthropic.InternalServerError),
    ],
)
def test_error_statuses_raise_matching_sdk_errors(
    client: anthropic.Anthropic, fake: FakeBackend, turn: Turn, error: type
) -> None:
    fake.enqueue(turn)
    with pytest.raises(error) as exc:
        client.messages.create(**ask())
    body = exc.value.body
    assert body["type"] == "error" and body["error"]["type"] and body["error"]["message"]
    if isinstance(exc.value, anthropic.RateLimitError):
        assert exc.value.response.headers["retry-after"] in ("4", "5")


def test_failure_mid_stream_is_an_error_event(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    fake.enqueue(
        Turn(output=[text("partial", chunks=3)], fail={"code": "server_is_overloaded", "message": "busy"})
    )
    with pytest.raises(anthropic.APIStatusError, match="busy"), client.messages.stream(**ask()) as stream:
        stream.get_final_message()


def test_cut_stream_is_an_error_not_a_clean_stop(proxy: Proxy, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("partial answer", chunks=6)], cut_after=5))
    with httpx.stream(
        "POST", proxy.v1 + "/messages", json=ask(stream=True), trust_env=False, timeout=30
    ) as r:
        body = r.read().decode()
    assert "event: error" in body
    assert "message_stop" not in body


def test_pings_while_upstream_is_silent(proxy: Proxy, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("after thinking")], stall=1.2))
    with httpx.stream(
        "POST", proxy.v1 + "/messages", json=ask(stream=True), trust_env=False, timeout=30
    ) as r:
        body = r.read().decode()
    assert body.count("event: ping") >= 2
    assert body.index("event: message_start") < body.index("event: ping") < body.index("event: message_stop")


def test_max_tokens_1_probe_is_answered_without_generation(
    client: anthropic.Anthropic, fake: FakeBackend
) -> None:
    msg = client.messages.create(
        **ask(max_tokens=1, messages=[{"role": "user", "content": "count me " * 100}])
    )
    assert msg.usage.input_tokens > 100
    assert fake.responses_requests == []


def test_stop_sequence_cuts_and_ends_early(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    import time

    fake.enqueue(
        Turn(
            output=[text("Answer: 42\n\nHuman: more text the client never wants " * 2, chunks=12)], delay=0.5
        )
    )
    started = time.monotonic()
    with client.messages.stream(**ask(stop_sequences=["\n\nHuman:"])) as stream:
        final = stream.get_final_message()
    assert time.monotonic() - started < 4  # the upstream needs ~8 s to finish; the client does not wait
    assert final.content[0].text == "Answer: 42"
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "\n\nHuman:"
    assert "stop_sequences" not in fake.responses_requests[-1].body
