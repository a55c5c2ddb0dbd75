"""Anthropic Messages <-> Codex Responses translation, driven by real Claude Code captures.

Streams are fed the SSE bytes the Codex backend sends (built with sse.frame, in the backend's shapes),
split whole, byte by byte and at awkward sizes; the output is checked strictly for structure and then
parsed by the real anthropic SDK's stream accumulator (over an in-memory transport, no server).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pytest

from codex_api_proxy.core import tokens
from codex_api_proxy.core.errors import HEARTBEAT_EVENT, ProxyError
from codex_api_proxy.core.models import DEFAULT_MODEL_MAP, map_model
from codex_api_proxy.core.sse import frame, parse_all
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, reasoning, text
from codex_api_proxy.translate.accumulate import aggregate
from codex_api_proxy.translate.anthropic import (
    GPT_EFFORTS,
    Stream,
    clean_schema,
    decode_signature,
    encode_signature,
    from_response,
    is_probe,
    probe_response,
    to_upstream,
    upstream_tool_name,
)
from codex_api_proxy.translate.base import RequestContext, TranslatorOptions

from .conftest import ACCESS_TOKEN, ACCOUNT_ID

FIXTURES = Path(__file__).parent / "fixtures"
NEVER_UPSTREAM = ("max_tokens", "max_output_tokens", "temperature", "top_p", "top_k", "stop_sequences",
                  "stop", "metadata", "cache_control", "context_management", "thinking", "output_config",
                  "system")  # fmt: skip


def capture(name: str) -> tuple[dict[str, Any], RequestContext]:
    """A Claude Code capture's body and the context the addon would build for it."""
    data = json.loads((FIXTURES / name).read_text())
    body = data["body"]
    headers = {k.lower(): v for k, v in data["headers"].items()}
    return body, RequestContext(model=body["model"], stream=bool(body.get("stream")), headers=headers)


def translate(
    body: dict[str, Any], headers: dict[str, str] | None = None, **options: Any
) -> tuple[dict, RequestContext]:
    ctx = RequestContext(
        model=body.get("model", ""),
        stream=bool(body.get("stream")),
        headers=headers or {},
        options=TranslatorOptions(**options),
    )
    return to_upstream(body, ctx), ctx


def user(*content: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(content)}


def assistant(*content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": list(content)}


def tool_use(call_id: str = "toolu_1", name: str = "Bash", args: dict | None = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": call_id,
        "name": name,
        "input": args if args is not None else {"command": "ls"},
    }


def tool_result(call_id: str = "toolu_1", content: Any = "ok", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


def body_with(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-5.5", "max_tokens": 100, "messages": list(messages), **extra}


# ---- upstream events, in the shapes the Codex backend streams ------------------------------------------


def created(resp_id: str = "resp_abc123") -> list[dict[str, Any]]:
    resp = {"id": resp_id, "object": "response", "status": "in_progress", "output": [], "usage": None}
    return [
        {"type": "response.created", "response": resp},
        {"type": "response.in_progress", "response": resp},
    ]


def split(value: str, n: int) -> list[str]:
    size = max(1, -(-len(value) // n))
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def message_events(oi: int, value: str, chunks: int = 3, part: str = "output_text") -> list[dict[str, Any]]:
    at = {"item_id": f"msg_{oi}", "output_index": oi, "content_index": 0}
    key = "text" if part == "output_text" else "refusal"
    delta = "response.output_text.delta" if part == "output_text" else "response.refusal.delta"
    done = {"type": part, key: value, **({"annotations": []} if part == "output_text" else {})}
    item = {"type": "message", "id": f"msg_{oi}", "role": "assistant", "status": "in_progress", "content": []}
    return [
        {"type": "response.output_item.added", "output_index": oi, "item": item},
        {"type": "response.content_part.added", **at, "part": {**done, key: ""}},
        *({"type": delta, **at, "delta": d} for d in split(value, chunks)),
        {"type": "response.content_part.done", **at, "part": done},
        {
            "type": "response.output_item.done",
            "output_index": oi,
            "item": {**item, "status": "completed", "content": [done]},
        },
    ]


def reasoning_events(
    oi: int, summary: list[str], enc: str | None = "ENC", item_id: str = "rs_1"
) -> list[dict]:
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "output_index": oi,
            "item": {"type": "reasoning", "id": item_id, "summary": []},
        }
    ]
    for s, part in enumerate(summary):
        at = {"item_id": item_id, "output_index": oi, "summary_index": s}
        events.append(
            {
                "type": "response.reasoning_summary_part.added",
                **at,
                "part": {"type": "summary_text", "text": ""},
            }
        )
        events += [
            {"type": "response.reasoning_summary_text.delta", **at, "delta": d} for d in split(part, 2)
        ]
        events.append({"type": "response.reasoning_summary_text.done", **at, "text": part})
    item = {
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": s} for s in summary],
        "encrypted_content": enc,
    }
    return [*events, {"type": "response.output_item.done", "output_index": oi, "item": item}]


def call_events(
    oi: int, name: str, args: str, call_id: str = "call_1", chunks: int = 3
) -> list[dict[str, Any]]:
    item = {
        "type": "function_call",
        "id": f"fc_{oi}",
        "call_id": call_id,
        "name": name,
        "arguments": "",
        "status": "in_progress",
    }
    at = {"item_id": f"fc_{oi}", "output_index": oi}
    return [
        {"type": "response.output_item.added", "output_index": oi, "item": item},
        *({"type": "response.function_call_arguments.delta", **at, "delta": d} for d in split(args, chunks)),
        {"type": "response.function_call_arguments.done", **at, "arguments": args},
        {
            "type": "response.output_item.done",
            "output_index": oi,
            "item": {**item, "arguments": args, "status": "completed"},
        },
    ]


USAGE = {
    "input_tokens": 1200,
    "input_tokens_details": {"cached_tokens": 1000},
    "output_tokens": 42,
    "output_tokens_details": {"reasoning_tokens": 10},
    "total_tokens": 1242,
}


def completed(usage: dict | None = None, incomplete: str | None = None) -> list[dict[str, Any]]:
    resp = {
        "id": "resp_abc123",
        "object": "response",
        "output": [],
        "usage": usage or USAGE,
        "status": "incomplete" if incomplete else "completed",
    }
    if incomplete:
        resp["incomplete_details"] = {"reason": incomplete}
        return [{"type": "response.incomplete", "response": resp}]
    return [{"type": "response.completed", "response": resp}]


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(frame(e, e["type"]) for e in events)


def feed(translator: Stream, data: bytes, size: int = 0) -> bytes:
    """Everything the translator writes for `data` split into `size`-byte chunks (0: one chunk), then EOF."""
    chunks = [data[i : i + size] for i in range(0, len(data), size)] if size else [data]
    out = [b for chunk in chunks for b in translator(chunk)]
    return b"".join(out + translator(b""))


def stream(events: list[dict[str, Any]], ctx: RequestContext, size: int = 0) -> bytes:
    return feed(Stream(ctx), sse(events), size)


def thinking_ctx() -> RequestContext:
    """The context to_upstream leaves for a plain request with adaptive thinking."""
    return translate(body_with({"role": "user", "content": "hi"}, thinking={"type": "adaptive"}))[1]


# ---- checks on the Anthropic stream ---------------------------------------------------------------------

DELTA_FOR = {
    "text": {"text_delta", "citations_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
    "server_tool_use": {"input_json_delta"},
    "web_search_tool_result": set(),
}


def check_structure(raw: bytes) -> list[dict[str, Any]]:
    """Claude Code's and the SDKs' requirements (clients.md §2, §4), strictly; returns the event payloads."""
    assert raw.endswith(b"\n\n")
    events = parse_all(raw)
    payloads = [e.json() for e in events]
    for event, data in zip(events, payloads, strict=True):
        assert event.event == data["type"], "every event carries a matching `event:` line"
    kinds = [d["type"] for d in payloads if d["type"] != "ping"]
    if "error" in kinds:
        assert kinds[-1] == "error" and kinds.count("error") == 1, "an error is the last word"
        assert "message_stop" not in kinds and "message_delta" not in kinds
        kinds = kinds[:-1]
    else:
        assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    if kinds:
        assert kinds[0] == "message_start" and kinds.count("message_start") == 1
        start = next(d for d in payloads if d["type"] == "message_start")["message"]
        assert start["content"] == [] and start["stop_reason"] is None and "usage" in start
    open_block: dict | None = None
    next_index = 0
    for d in payloads:
        if d["type"] == "content_block_start":
            assert open_block is None, "a block opened before the previous one closed"
            assert d["index"] == next_index, "indices are 0, 1, 2... in order"
            open_block, next_index = d, next_index + 1
            if d["content_block"]["type"] in ("tool_use", "server_tool_use"):
                assert d["content_block"]["input"] == {}
        elif d["type"] == "content_block_delta":
            assert open_block is not None and d["index"] == open_block["index"]
            assert d["delta"]["type"] in DELTA_FOR[open_block["content_block"]["type"]]
        elif d["type"] == "content_block_stop":
            assert open_block is not None and d["index"] == open_block["index"]
            open_block = None
        elif d["type"] == "message_delta":
            assert open_block is None and "usage" in d and "stop_reason" in d["delta"]
    if "message_stop" in kinds:
        assert open_block is None
    return payloads


def blocks(message: anthropic.types.Message) -> list[dict[str, Any]]:
    """A message's content blocks as the JSON a client sends back."""
    return [b.model_dump(exclude_none=True, exclude={"parsed_output"}) for b in message.content]


def sdk_final(raw: bytes) -> anthropic.types.Message:
    """The message the real anthropic SDK's `messages.stream(...).get_final_message()` builds from `raw`."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    client = anthropic.Anthropic(
        api_key="x",
        base_url="http://proxy.invalid",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
        return s.get_final_message()


# ---- requests: the real Claude Code captures -------------------------------------------------------------


def test_first_turn_capture_becomes_a_clean_codex_request() -> None:
    body, ctx = capture("cc_messages_first_turn_gpt55.json")
    up = to_upstream(body, ctx)
    system = body["system"]
    assert system[0]["text"].startswith("x-anthropic-billing-header:")
    assert up["instructions"] == system[1]["text"] + "\n\n" + system[2]["text"]
    assert "billing-header" not in json.dumps(up)
    # the mid-conversation role:"system" message stays at its position, as a developer message
    first, second = up["input"]
    assert first["role"] == "user" and [p["text"] for p in first["content"]] == [
        b["text"] for b in body["messages"][0]["content"]
    ]
    assert second == {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": body["messages"][1]["content"]}],
    }
    assert up["model"] == "gpt-5.5" and ctx.model == "gpt-5.5"
    assert up["reasoning"] == {"effort": "high", "summary": "auto"}  # adaptive + output_config.effort high
    assert up["include"] == ["reasoning.encrypted_content"]
    assert up["prompt_cache_key"] == ctx.headers["x-claude-code-session-id"]
    assert up["stream"] is True and up["store"] is False
    assert up["tool_choice"] == "auto" and up["parallel_tool_calls"] is True
    assert [t["name"] for t in up["tools"]] == [t["name"] for t in body["tools"]]
    assert all(
        t["type"] == "function" and "strict" not in t and t["parameters"]["type"] == "object"
        for t in up["tools"]
    )
    dumped = json.dumps(up)
    assert '"$schema"' not in dumped and "cache_control" not in dumped and "ephemeral" not in dumped
    assert not set(up) & set(NEVER_UPSTREAM)


def test_sonnet_capture_maps_model_and_thinking_budget() -> None:
    body, ctx = capture("cc_messages_first_turn_sonnet45.json")
    up = to_upstream(body, ctx)
    assert body["thinking"] == {"budget_tokens": 31999, "type": "enabled"}
    assert up["model"] == DEFAULT_MODEL_MAP["sonnet"] and ctx.model == "claude-sonnet-4-5"
    assert up["reasoning"] == {"effort": "high", "summary": "auto"}
    assert len(up["input"]) == 1 and len(up["input"][0]["content"]) == 4


@pytest.mark.parametrize(
    ("fixture", "expected_output"),
    [
        ("cc_messages_tool_result_bash.json", "hello"),
        ("cc_messages_tool_result_read.json", "1\tline one\n2\tline two\n3\t"),
        (
            "cc_messages_tool_result_bash_error.json",
            "Error: Exit code 1\ncat: missing_file.txt: No such file or directory",
        ),
        (
            "cc_messages_tool_result_permission_denied.json",
            "Error: Claude requested permissions to read from /home/user/hello.txt, but you haven't granted it yet.",
        ),
    ],
)
def test_tool_result_captures(fixture: str, expected_output: str) -> None:
    body, ctx = capture(fixture)
    up = to_upstream(body, ctx)
    call_block = body["messages"][-2]["content"][-1]
    text_item, call, output = up["input"][-3:]
    assert text_item == {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "I'll run that."}],
    }
    assert call == {
        "type": "function_call",
        "call_id": call_block["id"],
        "name": call_block["name"],
        "arguments": json.dumps(call_block["input"], separators=(",", ":")),
    }
    assert output == {"type": "function_call_output", "call_id": call_block["id"], "output": expected_output}


def test_parallel_results_follow_both_calls_in_completion_order() -> None:
    body, ctx = capture("cc_messages_parallel_tool_results.json")
    kinds = [(i["type"], i.get("call_id"), i.get("output")) for i in to_upstream(body, ctx)["input"][-4:]]
    assert kinds == [
        ("function_call", "toolu_A1711aa2d85194d9f9178", None),
        ("function_call", "toolu_Bd7c34b1de2104a2faeca", None),
        ("function_call_output", "toolu_Bd7c34b1de2104a2faeca", "beta"),
        ("function_call_output", "toolu_A1711aa2d85194d9f9178", "alpha"),
    ]


@pytest.mark.parametrize(
    "fixture",
    ["cc_messages_tool_result_with_thinking.json", "cc_messages_tool_result_with_redacted_thinking.json"],
)
def test_foreign_thinking_and_redacted_thinking_are_dropped_cleanly(fixture: str) -> None:
    body, ctx = capture(fixture)
    up = to_upstream(body, ctx)
    assert [i["type"] for i in up["input"][-3:]] == ["message", "function_call", "function_call_output"]
    assert not any(i["type"] == "reasoning" for i in up["input"])
    assert "fakesig" not in json.dumps(up) and "ZmFrZS1yZWRhY3RlZA" not in json.dumps(up)


def test_nonstreaming_fallback_capture_still_streams_upstream() -> None:
    body, ctx = capture("cc_messages_nonstreaming_fallback.json")
    assert "stream" not in body and ctx.stream is False
    up = to_upstream(body, ctx)
    assert up["stream"] is True and up["store"] is False
    assert up["input"][0]["content"][-1]["text"] == "say hi"


# ---- requests: every block type ---------------------------------------------------------------------------


PNG = "iVBORw0KGgo="


@pytest.mark.parametrize(
    ("block", "part"),
    [
        ({"type": "text", "text": "hi"}, {"type": "input_text", "text": "hi"}),
        (
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
        ),
        (
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
            {"type": "input_image", "image_url": "https://x.test/a.png"},
        ),
        (
            {
                "type": "document",
                "title": "spec.pdf",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            },
            {
                "type": "input_file",
                "filename": "spec.pdf",
                "file_data": "data:application/pdf;base64,JVBERi0=",
            },
        ),
        (
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            },
            {
                "type": "input_file",
                "filename": "document.pdf",
                "file_data": "data:application/pdf;base64,JVBERi0=",
            },
        ),
        (
            {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
            {"type": "input_file", "file_url": "https://x.test/a.pdf"},
        ),
        (
            {
                "type": "document",
                "title": "notes",
                "source": {"type": "text", "media_type": "text/plain", "data": "body"},
            },
            {"type": "input_text", "text": "notes\n\nbody"},
        ),
        (
            {
                "type": "search_result",
                "title": "T",
                "source": "https://s.test",
                "content": [{"type": "text", "text": "c"}],
            },
            {"type": "input_text", "text": "T\nhttps://s.test\nc"},
        ),
    ],
)
def test_user_blocks(block: dict[str, Any], part: dict[str, Any]) -> None:
    up, _ = translate(body_with(user(block)))
    assert up["input"] == [{"type": "message", "role": "user", "content": [part]}]


def test_user_string_content_and_system_string() -> None:
    up, _ = translate(body_with({"role": "user", "content": "plain"}, system="Be brief."))
    assert up["instructions"] == "Be brief."
    assert up["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "plain"}]}
    ]


@pytest.mark.parametrize(
    "system", [None, "", "   ", [], [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"}]]
)
def test_empty_instructions_are_omitted(system: Any) -> None:
    up, _ = translate(
        body_with(user({"type": "text", "text": "hi"}), **({} if system is None else {"system": system}))
    )
    assert "instructions" not in up


@pytest.mark.parametrize(
    ("content", "is_error", "output"),
    [
        ("done", None, "done"),
        ("done", False, "done"),
        ("boom", True, "Error: boom"),
        ("Error: already says so", True, "Error: already says so"),
        ("", True, "Error: (no output)"),
        (None, None, ""),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], None, "a\nb"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], True, "Error: a\nb"),
        (
            [
                {"type": "text", "text": "shot:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
            None,
            [
                {"type": "input_text", "text": "shot:"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
            ],
        ),
        (
            [{"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}}],
            True,
            [
                {"type": "input_text", "text": "Error: the tool failed; its output follows."},
                {"type": "input_image", "image_url": "https://x.test/i.png"},
            ],
        ),
    ],
)
def test_tool_result_content(content: Any, is_error: bool | None, output: Any) -> None:
    extra = {} if is_error is None else {"is_error": is_error}
    up, _ = translate(
        body_with(
            user({"type": "text", "text": "go"}),
            assistant(tool_use()),
            user(tool_result(content=content, **extra)),
        )
    )
    assert up["input"][-1] == {"type": "function_call_output", "call_id": "toolu_1", "output": output}


def test_text_beside_tool_results_follows_all_outputs_in_order() -> None:
    up, _ = translate(
        body_with(
            user({"type": "text", "text": "go"}),
            assistant(
                {"type": "text", "text": "before"},
                tool_use("t1"),
                {"type": "text", "text": "between"},
                tool_use("t2"),
                {"type": "text", "text": "after"},
            ),
            user(
                tool_result("t1", "one"),
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                tool_result("t2", "two"),
                {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}},
            ),
        )
    )
    got = [
        (
            i["type"],
            i.get("role"),
            i.get("call_id"),
            [p.get("text") or p.get("image_url") for p in i.get("content", [])],
        )
        for i in up["input"][1:]
    ]
    assert got == [
        ("message", "assistant", None, ["before"]),
        ("function_call", None, "t1", []),
        ("message", "assistant", None, ["between"]),
        ("function_call", None, "t2", []),
        ("message", "assistant", None, ["after"]),
        ("function_call_output", None, "t1", []),
        ("function_call_output", None, "t2", []),
        ("message", "user", None, ["<system-reminder>x</system-reminder>", "https://x.test/i.png"]),
    ]


def test_assistant_string_content_and_empty_text_blocks() -> None:
    up, _ = translate(
        body_with(
            user({"type": "text", "text": "q"}),
            {"role": "assistant", "content": "a"},
            assistant({"type": "text", "text": ""}),
            user({"type": "text", "text": "q2"}),
        )
    )
    assert [i["role"] for i in up["input"]] == ["user", "assistant", "user"]
    assert up["input"][1]["content"] == [{"type": "output_text", "text": "a"}]


def test_own_thinking_signature_restores_the_reasoning_item_in_place() -> None:
    sig = encode_signature("rs_42", "gAAAA-encrypted", "gpt-5.5")
    assert sig.startswith("cxp1.") and decode_signature(sig) == {
        "id": "rs_42",
        "enc": "gAAAA-encrypted",
        "m": "gpt-5.5",
    }
    up, _ = translate(
        body_with(
            user({"type": "text", "text": "go"}),
            assistant(
                {"type": "thinking", "thinking": "Plan it.", "signature": sig},
                {"type": "text", "text": "Running."},
                tool_use(),
            ),
            user(tool_result()),
            assistant(
                {
                    "type": "thinking",
                    "thinking": "",
                    "signature": encode_signature("rs_43", "enc2", "gpt-5.5"),
                },
                {"type": "text", "text": "Done."},
            ),
        )
    )
    assert [i["type"] for i in up["input"][1:]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "message",
    ]
    assert up["input"][1] == {
        "type": "reasoning",
        "id": "rs_42",
        "summary": [{"type": "summary_text", "text": "Plan it."}],
        "encrypted_content": "gAAAA-encrypted",
    }
    assert up["input"][5] == {"type": "reasoning", "id": "rs_43", "summary": [], "encrypted_content": "enc2"}


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "fakesig_123",
        "EqQBCkYIBxgCKkB",
        "cxp1.",
        "cxp1.!!!not-base64",
        "cxp1." + "e30",  # e30 = {}
        encode_signature("rs_1", "enc", "gpt-5.4-mini"),
    ],  # ours, but from another upstream model
)
def test_foreign_or_mismatched_signatures_are_dropped(signature: str) -> None:
    up, _ = translate(
        body_with(
            user({"type": "text", "text": "go"}),
            assistant(
                {"type": "thinking", "thinking": "t", "signature": signature}, {"type": "text", "text": "x"}
            ),
        )
    )
    assert [i["type"] for i in up["input"]] == ["message", "message"]


# ---- requests: models, reasoning, tools -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model_map", "expected"),
    [
        ("claude-opus-4-8", None, "gpt-5.5"),
        ("claude-sonnet-4-5-20250929", None, "gpt-5.5"),
        ("claude-haiku-4-5", None, "gpt-5.4-mini"),
        ("claude-3-5-haiku-latest", None, "gpt-5.4-mini"),
        ("claude-instant", None, "gpt-5.5"),  # a claude name with no family counts as sonnet
        ("gpt-5.5", None, "gpt-5.5"),
        ("gpt-5.4-codex", {"opus": "x"}, "gpt-5.4-codex"),
        ("claude-opus-4-8", {"opus": "gpt-5.5-pro"}, "gpt-5.5-pro"),
        ("claude-haiku-4-5", {"opus": "gpt-5.5-pro"}, "gpt-5.4-mini"),
        ("claude-sonnet-4-5", {"claude-sonnet-4-5": "gpt-5.3"}, "gpt-5.3"),
    ],
)
def test_model_names(name: str, model_map: dict | None, expected: str) -> None:
    assert map_model(name, model_map) == expected
    up, ctx = translate(body_with(user({"type": "text", "text": "x"}), model=name), model_map=model_map)
    assert up["model"] == expected and ctx.model == name


@pytest.mark.parametrize(
    ("extra", "reasoning"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, {"effort": "low", "summary": "auto"}),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, {"effort": "medium", "summary": "auto"}),
        ({"thinking": {"type": "enabled", "budget_tokens": 16383}}, {"effort": "medium", "summary": "auto"}),
        ({"thinking": {"type": "enabled", "budget_tokens": 16384}}, {"effort": "high", "summary": "auto"}),
        ({"thinking": {"type": "adaptive"}}, {"effort": "high", "summary": "auto"}),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}},
            {"effort": "low", "summary": "auto"},
        ),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}},
            {"effort": "medium", "summary": "auto"},
        ),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
            {"effort": "max", "summary": "auto"},
        ),
        (
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}},
            {"effort": "xhigh", "summary": "auto"},
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2000}, "output_config": {"effort": "high"}},
            {"effort": "high", "summary": "auto"},
        ),
        ({"thinking": {"type": "disabled"}}, {"effort": "low"}),
        ({}, {"effort": "low"}),
        ({"output_config": {"effort": "high"}}, {"effort": "high"}),
    ],
)
def test_reasoning_effort_table(extra: dict[str, Any], reasoning: dict[str, str]) -> None:
    up, ctx = translate(body_with(user({"type": "text", "text": "x"}), **extra))
    assert up["reasoning"] == reasoning
    assert ("include" in up) is ("summary" in reasoning) is ctx.state.thinking


def test_every_claude_effort_level_keeps_its_place_on_the_gpt_scale() -> None:
    claude = ["low", "medium", "high", "xhigh", "max"]
    mapped = [translate(body_with(user({"type": "text", "text": "x"}), output_config={"effort": e}))[0]
              for e in claude]  # fmt: skip
    ranks = [GPT_EFFORTS.index(up["reasoning"]["effort"]) for up in mapped]
    assert ranks == sorted(set(ranks)) and len(ranks) == len(claude)  # strictly increasing: nothing collapsed
    assert [up["reasoning"]["effort"] for up in mapped] == claude


def test_fields_the_backend_rejects_never_leave() -> None:
    up, _ = translate(
        body_with(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
                ],
            },
            system=[{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
            temperature=0.2,
            top_p=0.9,
            top_k=5,
            stop_sequences=["END"],
            metadata={"user_id": "u"},
            context_management={"edits": []},
            service_tier="standard_only",
            container="c",
            speed="fast",
        )
    )
    assert set(up) == {"model", "instructions", "input", "reasoning", "prompt_cache_key", "stream", "store"}
    assert "cache_control" not in json.dumps(up)


def test_prompt_cache_key_without_session_header_is_stable_across_turns() -> None:
    turn1 = body_with(
        user({"type": "text", "text": "task", "cache_control": {"type": "ephemeral"}}), system="S"
    )
    turn2 = body_with(
        user({"type": "text", "text": "task"}),
        assistant(tool_use()),
        user(tool_result(cache_control={"type": "ephemeral"})),
        system="S",
    )
    other = body_with(user({"type": "text", "text": "another task"}), system="S")
    key1, key2, key3 = (translate(b)[0]["prompt_cache_key"] for b in (turn1, turn2, other))
    assert key1 == key2 != key3 and key1.startswith("cxp-")
    assert translate(turn1, {"x-claude-code-session-id": "sess-1"})[0]["prompt_cache_key"] == "sess-1"


def test_tool_names_are_sanitised_reversibly() -> None:
    long = "mcp__some-very-long-server-name__and_an_even_longer_tool_name_that_goes_past_the_limit"
    dotted = "files.read"
    for name in (long, dotted):
        up_name = upstream_tool_name(name)
        assert len(up_name) <= 64 and up_name != name
        assert all(c.isalnum() or c in "_-" for c in up_name)
        assert upstream_tool_name(name) == up_name  # deterministic
    assert upstream_tool_name("Bash") == "Bash"
    tools = [{"name": n, "input_schema": {"type": "object"}} for n in (long, dotted, "Bash")]
    up, ctx = translate(
        body_with(
            user({"type": "text", "text": "x"}),
            assistant(tool_use("t1", long, {})),
            user(tool_result("t1")),
            tools=tools,
            tool_choice={"type": "tool", "name": dotted},
        )
    )
    assert [t["name"] for t in up["tools"]] == [upstream_tool_name(long), upstream_tool_name(dotted), "Bash"]
    assert up["input"][1]["name"] == upstream_tool_name(long)
    assert up["tool_choice"] == {"type": "function", "name": upstream_tool_name(dotted)}
    assert ctx.state.tool_names == {upstream_tool_name(long): long, upstream_tool_name(dotted): dotted}
    # and the way back, streamed and whole
    events = created() + call_events(0, upstream_tool_name(long), "{}") + completed()
    assert blocks(sdk_final(stream(events, ctx)))[0]["name"] == long
    whole = from_response(
        {
            "id": "resp_1",
            "output": [
                {
                    "type": "function_call",
                    "call_id": "c",
                    "name": upstream_tool_name(dotted),
                    "arguments": "{}",
                }
            ],
        },
        ctx,
    )
    assert whole["content"][0]["name"] == dotted


def test_schema_cleaning() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "a property named like a keyword stays"},
            "$schema": {"type": "string"},
            "word": {
                "type": "string",
                "pattern": "^\\p{L}+$",
            },  # PCRE class: the validator's "is not a 'regex'"
            "slug": {"type": "string", "pattern": "^[a-z-]+$", "format": "uri", "minLength": 1},
            "nested": {
                "type": "array",
                "items": {"$id": "x", "type": "object", "properties": {"n": {"type": None}}},
            },
            "choice": {
                "anyOf": [{"type": "string", "$comment": "c"}, {"type": "integer", "exclusiveMinimum": 0}]
            },
            "map": {
                "type": "object",
                "propertyNames": {"pattern": "^[a-z]+$"},
                "additionalProperties": {"type": "string"},
            },
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }
    original = copy.deepcopy(schema)
    cleaned = clean_schema(schema)
    assert schema == original  # the client's body is not modified
    assert "$schema" not in cleaned and set(cleaned["properties"]) == set(schema["properties"])
    assert cleaned["properties"]["pattern"] == schema["properties"]["pattern"]
    assert cleaned["properties"]["$schema"] == {"type": "string"}
    assert cleaned["properties"]["word"] == {"type": "string"}
    assert cleaned["properties"]["slug"] == schema["properties"]["slug"]
    assert cleaned["properties"]["nested"] == {
        "type": "array",
        "items": {"type": "object", "properties": {"n": {}}},
    }
    assert cleaned["properties"]["choice"] == {
        "anyOf": [{"type": "string"}, {"type": "integer", "exclusiveMinimum": 0}]
    }
    assert cleaned["properties"]["map"] == schema["properties"]["map"]
    assert cleaned["required"] == ["pattern"] and cleaned["additionalProperties"] is False


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, {"type": "object", "properties": {}}),
        ({"type": "object"}, {"type": "object", "properties": {}}),
        (
            {
                "anyOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}},
                    {"type": "object", "properties": {"b": {}}},
                ]
            },
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}},
        ),
    ],
)
def test_schema_top_level_is_a_plain_object(schema: dict, expected: dict) -> None:
    assert clean_schema(schema) == expected


def test_tools_server_tools_and_descriptions() -> None:
    tools = [
        {
            "name": "Bash",
            "description": "Run a command",
            "input_schema": {"type": "object", "properties": {}},
            "cache_control": {"type": "ephemeral"},
            "strict": True,
        },
        {"name": "NoSchema"},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 8},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "custom", "name": "Custom", "description": "", "input_schema": {"type": "object"}},
    ]
    up, _ = translate(body_with(user({"type": "text", "text": "x"}), tools=tools))
    assert up["tools"] == [
        {
            "type": "function",
            "name": "Bash",
            "description": "Run a command",
            "parameters": {"type": "object", "properties": {}},
        },
        {"type": "function", "name": "NoSchema", "parameters": {"type": "object", "properties": {}}},
        {"type": "web_search"},
        {"type": "function", "name": "Custom", "parameters": {"type": "object", "properties": {}}},
    ]
    forced, _ = translate(
        body_with(
            user({"type": "text", "text": "x"}),
            tools=tools,
            tool_choice={"type": "tool", "name": "web_search"},
        )
    )
    assert forced["tool_choice"] == "required"


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        (None, "auto", True),
        ({"type": "auto"}, "auto", True),
        ({"type": "any"}, "required", True),
        ({"type": "none"}, "none", True),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "name": "Bash"}, True),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": False}, "required", True),
    ],
)
def test_tool_choice(choice: Any, expected: Any, parallel: bool) -> None:
    extra = {"tool_choice": choice} if choice is not None else {}
    up, _ = translate(
        body_with(user({"type": "text", "text": "x"}), tools=[{"name": "Bash", "input_schema": {}}], **extra)
    )
    assert up["tool_choice"] == expected and up["parallel_tool_calls"] is parallel


def test_no_tools_means_no_tool_choice() -> None:
    up, _ = translate(body_with(user({"type": "text", "text": "x"}), tool_choice={"type": "any"}))
    assert "tools" not in up and "tool_choice" not in up and "parallel_tool_calls" not in up


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request body must be a JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "  ", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages.0"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"model": "m", "messages": [{"role": "user", "content": [tool_result("toolu_x")]}]}, "toolu_x"),
        ({"model": "m", "messages": [{"role": "user", "content": [tool_use()]}]}, "assistant"),
        (
            {
                "model": "m",
                "messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "Bash"}]}],
            },
            "id and name",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ],
            },
            "messages.0.content.0.source",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": {"name": "a"}}, "tools"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"input_schema": {}}]},
            "tools.0.name",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "a"}, {"name": "a"}],
            },
            "unique",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "a"}],
                "tool_choice": {"type": "tool", "name": "b"},
            },
            "tool_choice.name",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop_sequences": "END"},
            "stop_sequences",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "on"}},
            "thinking.type",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "system": 5}, "system"),
    ],
)
def test_invalid_requests_are_400_with_a_clear_message(body: Any, message: str) -> None:
    with pytest.raises(ProxyError) as err:
        to_upstream(body, RequestContext())
    assert err.value.status == 400 and message in err.value.message
    assert err.value.anthropic_body()["error"]["type"] == "invalid_request_error"


def test_tool_result_must_follow_its_tool_use() -> None:
    later = body_with(user(tool_result("t1")), assistant(tool_use("t1")))
    with pytest.raises(ProxyError, match="t1"):
        to_upstream(later, RequestContext())


# ---- the stream -------------------------------------------------------------------------------------------

FULL_TURN = (
    created()
    + reasoning_events(0, ["**Plan** first.", "Then run it."], enc="gAAAA-opaque", item_id="rs_7")
    + message_events(1, "I'll run that.")
    + call_events(2, "Bash", '{"command":"echo hello","description":"Print hello"}')
    + completed()
)


@pytest.mark.parametrize("size", [0, 1, 7, 64])
def test_stream_full_turn_parses_with_the_real_sdk(size: int) -> None:
    ctx = thinking_ctx()
    raw = stream(FULL_TURN, ctx, size)
    assert raw == stream(FULL_TURN, thinking_ctx())  # the same bytes whatever the chunking
    events = check_structure(raw)
    start = events[0]["message"]
    assert start["id"] == "msg_abc123" and start["model"] == "gpt-5.5" and start["role"] == "assistant"
    message = sdk_final(raw)
    thinking, said, call = message.content
    assert thinking.type == "thinking" and thinking.thinking == "**Plan** first.\n\nThen run it."
    assert decode_signature(thinking.signature) == {"id": "rs_7", "enc": "gAAAA-opaque", "m": "gpt-5.5"}
    assert said.type == "text" and said.text == "I'll run that."
    assert call.type == "tool_use" and call.id == "call_1" and call.name == "Bash"
    assert call.input == {"command": "echo hello", "description": "Print hello"}
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    assert message.usage.input_tokens == 200 and message.usage.cache_read_input_tokens == 1000
    assert message.usage.output_tokens == 42 and message.usage.cache_creation_input_tokens == 0
    args = [
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    ]
    assert len(args) == 3, "arguments are streamed as they arrive, not in one piece"


def test_stream_has_the_shape_of_the_reference_capture() -> None:
    reference = check_structure((FIXTURES / "sse_anthropic_thinking_text_tool_use.txt").read_bytes())
    ours = check_structure(
        stream(
            created()
            + reasoning_events(0, ["Let me think about this request."])
            + message_events(1, "I'll run that.")
            + call_events(2, "Bash", '{"command":"echo hello"}')
            + completed(),
            thinking_ctx(),
        )
    )

    def shape(events: list[dict]) -> list[tuple]:
        return [
            (e["type"], e.get("content_block", {}).get("type"), e.get("delta", {}).get("stop_reason"))
            for e in events
            if e["type"] != "content_block_delta"
        ]

    assert shape(ours) == shape(reference)


def test_stream_is_incremental() -> None:
    translator = Stream(thinking_ctx())
    out = [translator(frame(e, e["type"])) for e in created() + message_events(0, "abcdef", chunks=3)]
    assert b"message_start" in out[0][0]
    deltas = [json.loads(parse_all(b"".join(o))[-1].data) for o in out if b"text_delta" in b"".join(o)]
    assert [d["delta"]["text"] for d in deltas] == ["ab", "cd", "ef"]


def test_parallel_calls_become_consecutive_closed_blocks() -> None:
    events = (
        created()
        + call_events(0, "Bash", '{"command":"echo alpha"}', "call_A")
        + call_events(1, "Bash", '{"command":"echo beta"}', "call_B")
        + completed()
    )
    raw = stream(events, thinking_ctx(), 5)
    check_structure(raw)
    message = sdk_final(raw)
    assert [(b["id"], b["input"]) for b in blocks(message)] == [
        ("call_A", {"command": "echo alpha"}),
        ("call_B", {"command": "echo beta"}),
    ]
    assert message.stop_reason == "tool_use"


def test_a_block_is_closed_before_the_next_opens_even_without_its_done_event() -> None:
    def without_done(events: list[dict]) -> list[dict]:
        return [e for e in events if e["type"] != "response.output_item.done"]

    events = (
        created()
        + without_done(reasoning_events(0, ["Hmm."]))
        + without_done(message_events(1, "Text."))
        + call_events(2, "Bash", '{"command":"ls"}')
        + completed()
    )
    raw = stream(events, thinking_ctx(), 9)
    check_structure(raw)
    assert [b.type for b in sdk_final(raw).content] == ["thinking", "text", "tool_use"]


def test_reasoning_without_summary_still_round_trips() -> None:
    ctx = thinking_ctx()
    raw = stream(
        created()
        + reasoning_events(0, [], enc="opaque-only", item_id="rs_9")
        + message_events(1, "Hi.")
        + completed(),
        ctx,
    )
    check_structure(raw)
    thinking, said = sdk_final(raw).content
    assert thinking.type == "thinking" and thinking.thinking == ""
    assert said.type == "text"
    echoed = body_with(
        user({"type": "text", "text": "hi"}),
        assistant(thinking.model_dump(), said.model_dump()),
        user({"type": "text", "text": "more"}),
        thinking={"type": "adaptive"},
    )
    up, _ = translate(echoed)
    assert up["input"][1] == {
        "type": "reasoning",
        "id": "rs_9",
        "summary": [],
        "encrypted_content": "opaque-only",
    }


def test_reasoning_with_neither_summary_nor_encrypted_content_is_skipped() -> None:
    raw = stream(
        created() + reasoning_events(0, [], enc=None) + message_events(1, "Hi.") + completed(), thinking_ctx()
    )
    assert [b.type for b in sdk_final(raw).content] == ["text"]


def test_no_thinking_blocks_when_thinking_is_off() -> None:
    _, ctx = translate(body_with(user({"type": "text", "text": "x"}), thinking={"type": "disabled"}))
    raw = stream(FULL_TURN, ctx)
    check_structure(raw)
    assert [b.type for b in sdk_final(raw).content] == ["text", "tool_use"]
    assert [b["type"] for b in from_response(aggregate(sse(FULL_TURN)), ctx)["content"]] == [
        "text",
        "tool_use",
    ]


@pytest.mark.parametrize(
    ("events", "stop_reason"),
    [
        (message_events(0, "done"), "end_turn"),
        (call_events(0, "Bash", "{}"), "tool_use"),
        (message_events(0, "I can't help with that.", part="refusal"), "refusal"),
    ],
)
def test_stop_reasons(events: list[dict], stop_reason: str) -> None:
    ctx = thinking_ctx()
    raw = stream(created() + events + completed(), ctx)
    check_structure(raw)
    assert sdk_final(raw).stop_reason == stop_reason
    assert from_response(aggregate(sse(created() + events + completed())), ctx)["stop_reason"] == stop_reason


@pytest.mark.parametrize(
    ("reason", "stop_reason"), [("max_output_tokens", "max_tokens"), ("content_filter", "refusal")]
)
def test_incomplete_responses(reason: str, stop_reason: str) -> None:
    events = created() + message_events(0, "partial answ") + completed(incomplete=reason)
    raw = stream(events, thinking_ctx())
    check_structure(raw)
    message = sdk_final(raw)
    assert message.stop_reason == stop_reason and blocks(message)[0]["text"] == "partial answ"
    assert from_response(aggregate(sse(events)), thinking_ctx())["stop_reason"] == stop_reason


def test_failure_mid_stream_is_an_error_event_and_nothing_fake() -> None:
    failed = {
        "type": "response.failed",
        "response": {
            "id": "resp_abc123",
            "status": "failed",
            "error": {"code": "server_is_overloaded", "message": "Our servers are busy."},
        },
    }
    raw = stream(created() + message_events(0, "half")[:3] + [failed], thinking_ctx(), 3)
    events = check_structure(raw)
    assert events[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Our servers are busy."},
    }
    assert not any(e["type"] == "content_block_stop" for e in events)
    with pytest.raises(anthropic.APIStatusError, match="Our servers are busy"):
        sdk_final(raw)


def test_failure_before_anything_is_still_an_in_band_error() -> None:
    raw = stream(
        [
            {
                "type": "error",
                "error": {"code": "rate_limit_exceeded", "message": "Slow down, try again in 2s."},
            }
        ],
        thinking_ctx(),
    )
    assert parse_all(raw)[0].event == "error"
    assert [e["type"] for e in check_structure(raw)] == ["error"]
    assert json.loads(parse_all(raw)[0].data)["error"]["type"] == "rate_limit_error"


def test_truncated_upstream_never_ends_cleanly() -> None:
    raw = stream(created() + message_events(0, "cut off here")[:4], thinking_ctx())
    events = check_structure(raw)
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "api_error"


def test_heartbeat_is_a_ping() -> None:
    translator = Stream(thinking_ctx())
    out = b"".join(translator(sse(created())) + translator(frame({"type": HEARTBEAT_EVENT}, HEARTBEAT_EVENT)))
    assert out.endswith(b'event: ping\ndata: {"type":"ping"}\n\n')


def test_late_upstream_garbage_after_the_end_is_ignored() -> None:
    translator = Stream(thinking_ctx())
    first = b"".join(translator(sse(created() + message_events(0, "ok") + completed())))
    assert first.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert translator(sse(message_events(1, "more"))) == [] and translator(b"") == []


# ---- stop sequences ---------------------------------------------------------------------------------------


def stop_ctx(*stops: str) -> RequestContext:
    return translate(body_with(user({"type": "text", "text": "x"}), stop_sequences=list(stops)))[1]


def deltas_after_each(ctx: RequestContext, pieces: list[str]) -> list[str]:
    """The text sent to the client after each upstream delta."""
    translator = Stream(ctx)
    translator(sse(created() + message_events(0, "")[:2]))
    sent = []
    for piece in pieces:
        out = b"".join(
            translator(
                sse(
                    [
                        {
                            "type": "response.output_text.delta",
                            "output_index": 0,
                            "content_index": 0,
                            "delta": piece,
                        }
                    ]
                )
            )
        )
        sent.append(
            "".join(
                json.loads(e.data)["delta"].get("text", "")
                for e in parse_all(out)
                if e.event == "content_block_delta"
            )
        )
    return sent


def test_stop_sequence_holds_back_only_a_possible_start() -> None:
    ctx = stop_ctx("END", "\n\nHuman:")
    assert deltas_after_each(ctx, ["hello", " E", "x", "\n", "\nH", "uman", "ity"]) == [
        "hello",
        " ",
        "Ex",
        "",
        "",
        "",
        "\n\nHumanity",
    ]


@pytest.mark.parametrize("size", [0, 1, 5])
def test_stop_sequence_cuts_the_stream_and_ends_it(size: int) -> None:
    ctx = stop_ctx("END")
    events = (
        created()
        + message_events(0, "The answer ENDS here, or does it", chunks=6)
        + call_events(1, "Bash", "{}")
        + completed()
    )
    raw = stream(events, ctx, size)
    check_structure(raw)
    message = sdk_final(raw)
    assert [b.type for b in message.content] == ["text"]
    assert blocks(message)[0]["text"] == "The answer "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "END"
    assert message.usage.output_tokens == tokens.count_text("The answer ")


def test_nothing_follows_a_stop_sequence_even_an_unterminated_last_event() -> None:
    translator = Stream(stop_ctx("END"))
    tail = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","output_index":1,"content_index":0,"delta":"x"}'
    out = b"".join(
        translator(sse(created() + message_events(0, "a END b", chunks=1)[:3]) + tail) + translator(b"")
    )
    assert out.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    check_structure(out)


def test_stop_sequence_that_never_completes_is_released_at_the_end() -> None:
    message = sdk_final(
        stream(created() + message_events(0, "almost EN", chunks=4) + completed(), stop_ctx("END"))
    )
    assert blocks(message)[0]["text"] == "almost EN" and message.stop_reason == "end_turn"


def test_stop_sequence_in_whole_response() -> None:
    ctx = stop_ctx("STOP", "ANS")
    whole = from_response(
        aggregate(
            sse(
                created()
                + message_events(0, "first ANSWER then STOP")
                + call_events(1, "Bash", "{}")
                + completed()
            )
        ),
        ctx,
    )
    assert whole["content"] == [{"type": "text", "text": "first "}]
    assert whole["stop_reason"] == "stop_sequence" and whole["stop_sequence"] == "ANS"


# ---- whole responses --------------------------------------------------------------------------------------


def test_from_response_matches_the_stream() -> None:
    ctx = thinking_ctx()
    whole = from_response(aggregate(sse(FULL_TURN)), ctx)
    streamed = sdk_final(stream(FULL_TURN, ctx))
    assert whole["content"] == blocks(streamed)
    assert whole["id"] == "msg_abc123" and whole["model"] == "gpt-5.5" and whole["type"] == "message"
    assert whole["stop_reason"] == "tool_use" and whole["stop_sequence"] is None
    assert whole["usage"] == {
        "input_tokens": 200,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1000,
        "output_tokens": 42,
    }
    assert blocks(anthropic.types.Message.model_validate(whole)) == whole["content"]


@pytest.mark.parametrize(
    ("arguments", "tool_input"),
    [
        ('{"a":1}', {"a": 1}),
        ("", {}),
        ('{"a":1}}', {"a": 1}),  # trailing junk: the SDKs' partial parser accepts it too
        ('{"a":', {"_raw_arguments": '{"a":'}),
        ("[1,2]", {"_raw_arguments": "[1,2]"}),
    ],
)
def test_from_response_tool_arguments(arguments: str, tool_input: dict) -> None:
    response = {
        "id": "resp_1",
        "output": [{"type": "function_call", "call_id": "call_9", "name": "Bash", "arguments": arguments}],
    }
    whole = from_response(response, thinking_ctx())
    assert whole["content"] == [{"type": "tool_use", "id": "call_9", "name": "Bash", "input": tool_input}]


def test_from_response_echoes_the_requested_model_name() -> None:
    _, ctx = translate(body_with(user({"type": "text", "text": "x"}), model="claude-opus-4-8"))
    whole = from_response({"id": "resp_1", "output": []}, ctx)
    assert (
        whole["model"] == "claude-opus-4-8" and whole["content"] == [] and whole["stop_reason"] == "end_turn"
    )
    raw = stream(created() + message_events(0, "hi") + completed(), ctx)
    assert sdk_final(raw).model == "claude-opus-4-8"


# ---- count_tokens probe -----------------------------------------------------------------------------------


def test_count_tokens_probe_is_answered_locally() -> None:
    body, ctx = capture("cc_count_tokens_fallback_max_tokens_1.json")
    assert is_probe(body)
    answer = probe_response(body, ctx)
    message = anthropic.types.Message.model_validate(answer)
    assert message.usage.input_tokens == tokens.count_tokens(body) > 1000  # 9 tools
    assert message.content == [] and message.stop_reason == "max_tokens" and message.model == "gpt-5.5"


@pytest.mark.parametrize(
    ("body", "probe"),
    [
        ({"model": "m", "max_tokens": 1, "messages": []}, True),
        ({"model": "m", "max_tokens": 1, "stream": True, "messages": []}, False),
        ({"model": "m", "max_tokens": 2, "messages": []}, False),
        ({"model": "m", "max_tokens": True, "messages": []}, False),
        ({"model": "m", "messages": []}, False),
        ("nope", False),
    ],
)
def test_is_probe(body: Any, probe: bool) -> None:
    assert is_probe(body) is probe


# ---- the whole loop against the fake Codex backend --------------------------------------------------------


def post(fake: FakeBackend, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {ACCESS_TOKEN}", "chatgpt-account-id": ACCOUNT_ID}
    return httpx.post(fake.url + "/responses", json=body, headers=headers, timeout=10, trust_env=False)


def test_agent_loop_with_reasoning_replay_against_the_fake_backend(
    fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claude Code's turn 1 -> tool call -> its echo of our thinking block -> the backend verifies the
    replayed encrypted reasoning; then the same through the non-streaming path."""
    monkeypatch.setattr(fake, "encrypted_content_needs_include", True)
    accepted = len(fake.accepted_encrypted_content)
    fake.enqueue(
        Turn(
            output=[
                reasoning(["Need to run echo."]),
                text("I'll run that."),
                function_call("Bash", {"command": "echo hello"}),
            ]
        ),
        Turn(output=[reasoning([]), text("It printed hello.")]),
    )
    body, ctx = capture("cc_messages_first_turn_gpt55.json")
    first = post(fake, to_upstream(body, ctx))
    assert first.status_code == 200, first.text
    message = sdk_final(feed(Stream(ctx), first.content, 11))
    assert [b.type for b in message.content] == [
        "thinking",
        "text",
        "tool_use",
    ] and message.stop_reason == "tool_use"
    call = blocks(message)[2]
    # Claude Code appends the assistant turn verbatim and the tool result
    body2 = copy.deepcopy(body)
    body2["messages"] += [
        {
            "role": "assistant",
            "content": blocks(message),
        },
        {
            "role": "user",
            "content": [
                tool_result(call["id"], "hello", is_error=False, cache_control={"type": "ephemeral"})
            ],
        },
    ]
    body2.pop("stream")  # the non-streaming fallback path
    _, ctx2 = capture("cc_messages_first_turn_gpt55.json")
    up2 = to_upstream(body2, ctx2)
    assert [i["type"] for i in up2["input"][2:]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call_output",
    ]
    second = post(fake, up2)
    assert second.status_code == 200, second.text
    assert len(fake.accepted_encrypted_content) == accepted + 1  # the backend verified our replayed reasoning
    whole = from_response(aggregate(second.content), ctx2)
    assert [b["type"] for b in whole["content"]] == ["thinking", "text"] and whole["content"][1][
        "text"
    ] == "It printed hello."
    assert whole["stop_reason"] == "end_turn" and whole["usage"]["input_tokens"] > 0
