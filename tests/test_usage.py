"""The usage record stays bounded however long the proxy runs, and the SSE content view assembles a
streamed answer of each API family (their event shapes as the proxy writes them to clients)."""

from __future__ import annotations

import copy

from mitmproxy import contentviews

from codex_api_proxy.core.sse import frame
from codex_api_proxy.core.usage import RequestRecord, UsageBook
from codex_api_proxy.proxy.contentview import ServerSentEvents


def record(t: float, conversation: str = "", api: str = "anthropic", **tokens: int) -> RequestRecord:
    return RequestRecord(time=t, api=api, route="/messages", model="claude-sonnet-4-5", model_sent="gpt-5.5",
                         status=200, stream=True, ttfb_ms=1.0, duration_ms=2.0, conversation=conversation,
                         **tokens)  # fmt: skip


def test_the_record_is_bounded_and_keeps_the_latest() -> None:
    book = UsageBook(recent_size=10, conversations_size=5, minutes=30)
    start = 1_000_000.0  # any instant: only differences matter
    for n in range(500):
        book.record(record(start + n * 7, "main", input=100, cached=n % 100), "claude-sonnet-4-5")
        book.record(record(start + n * 7, f"sub-agent-{n}", input=10), "claude-sonnet-4-5")
        book.record(record(start + n * 7, api="local"), "")  # a poll of the page itself
    assert len(book.recent) == 10 and all(r.api == "anthropic" for r in book.recent)
    assert book.recent[-1].time == start + 499 * 7
    assert len(book.conversations) == 5 and list(book.conversations)[-1] == "sub-agent-499"  # oldest dropped
    assert len(book.buckets) == 30  # minutes
    main = book.conversation("main")  # used all along: never the least recent
    assert main is not None and main.turns == 500 and main.input == 50_000
    shown = book.as_json(now=start + 499 * 7)
    assert next(c["key"] for c in shown["conversations"]) == "sub-agent-499"  # most recent first
    assert sum(m["input"] for b in shown["series"] for m in b["models"].values()) <= 31 * 60 // 7 * 110
    long_key = "k" * 500
    book.record(record(start, long_key, input=1), "m")
    assert book.conversation(long_key) is not None and max(len(k) for k in book.conversations) <= 80


def test_a_cache_miss_reason_and_shares_are_kept_per_conversation() -> None:
    book = UsageBook()
    book.record(record(0, "s", input=1000, cached=0), "m")
    book.record(record(60, "s", input=1200, cached=1000), "m", "tools changed since the previous turn")
    conv = book.conversation("s")
    assert conv is not None
    shown = conv.as_json()
    assert shown["cached_share"] == round(1000 / 2200, 4) and shown["last_share"] == round(1000 / 1200, 4)
    assert shown["cache_miss"] == "tools changed since the previous turn"


def pretty(body: bytes) -> str:
    meta = contentviews.Metadata(content_type="text/event-stream; charset=utf-8")
    view = ServerSentEvents()
    assert view.render_priority(body, meta) > 1 and view.render_priority(body, contentviews.Metadata()) < 0
    return view.prettify(body, meta)


def test_the_sse_view_assembles_every_family() -> None:
    anthropic = b"".join([
        frame({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}, "content_block_start"),
        frame({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "let me"}}, "content_block_delta"),
        frame({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello "}}, "content_block_delta"),
        frame({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "world"}}, "content_block_delta"),
        frame({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "name": "Bash"}}, "content_block_start"),
        frame({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"command":'}}, "content_block_delta"),
        frame({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '"ls"}'}}, "content_block_delta"),
        b": keepalive\n\n",
    ])  # fmt: skip
    text = pretty(anthropic)
    assert text.startswith(
        'Text:\nHello world\n\nReasoning:\nlet me\n\nTool calls:\nBash: {"command":"ls"}\n'
    )
    assert "7 events:" in text
    chat = b"".join([
        frame({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}),
        frame({"choices": [{"index": 0, "delta": {"content": " there"}}]}),
        frame({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}}]}),
        b"data: [DONE]\n\n",
    ])  # fmt: skip
    assert pretty(chat).startswith("Text:\nHi there\n\nTool calls:\nf: {}\n")
    responses = b"".join([
        frame({"type": "response.reasoning_summary_text.delta", "delta": "think"}, "response.reasoning_summary_text.delta"),
        frame({"type": "response.output_text.delta", "delta": "Answer"}, "response.output_text.delta"),
        frame({"type": "response.output_item.added", "item": {"type": "function_call", "name": "g"}}, "response.output_item.added"),
        frame({"type": "response.function_call_arguments.delta", "delta": "{\"a\":1}"}, "response.function_call_arguments.delta"),
    ])  # fmt: skip
    assert pretty(responses).startswith('Text:\nAnswer\n\nReasoning:\nthink\n\nTool calls:\ng: {"a":1}\n')
    assert pretty(b"").startswith("(no text in this stream)")


def test_flow_state_copies_as_plain_data() -> None:
    """mitmweb saves flows (File > Save) as a deep copy of their metadata written with tnetstring."""
    from mitmproxy.io import tnetstring

    from codex_api_proxy.relay.exchange import Family, FlowState
    from codex_api_proxy.translate import anthropic
    from codex_api_proxy.translate.base import RequestContext

    state = FlowState(Family("anthropic", anthropic, anthropic=True), RequestContext("claude-x", True), False,
                      model_sent="gpt-5.5", usage={"input": 3})  # fmt: skip
    saved = copy.deepcopy({"codex_api_proxy": state})
    assert saved["codex_api_proxy"]["model_sent"] == "gpt-5.5"
    assert tnetstring.dumps(saved)
