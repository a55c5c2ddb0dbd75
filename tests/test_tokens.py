"""Local o200k_base token counts for Anthropic bodies (count_tokens and the max_tokens=1 probe)."""

from __future__ import annotations

import base64
import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from codex_api_proxy.core.errors import ProxyError
from codex_api_proxy.core.tokens import (
    BASE_TOKENS,
    IMAGE_TOKENS,
    MESSAGE_TOKENS,
    PDF_PAGE_TOKENS,
    TOOL_TOKENS,
    PieceCache,
    count_text,
    count_tokens,
    image_tokens,
)

FIXTURES = Path(__file__).parent / "fixtures"


def capture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())["body"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int) -> str:
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return b64(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + ihdr + b"\x00" * 40)


def jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb\x00\x04\x00\x00"
    sof = (
        b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03" + b"\x00" * 9
    )
    return b64(b"\xff\xd8" + app0 + dqt + sof + b"\xff\xda" + b"\x00" * 20)


def image(data: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def one_message(*blocks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": list(blocks)}], **extra}


def test_text_is_counted_with_o200k_base() -> None:
    assert count_text("") == 0
    assert count_text("hello world") == 2
    assert count_text("<|endoftext|>") > 1  # special-token lookalikes in user text are plain text


def test_a_string_message_is_its_tokens_plus_overheads() -> None:
    body = capture(
        "cc_count_tokens_system_section.json"
    )  # Claude Code's /context: {model, messages, tools: []}
    text = body["messages"][0]["content"]
    assert count_tokens(body) == BASE_TOKENS + MESSAGE_TOKENS + count_text(text)


def test_system_and_tools_are_counted() -> None:
    body = capture("cc_count_tokens_tools.json")
    without_tools = count_tokens({**body, "tools": []})
    tools_text = count_text(
        "\n".join(f"{t['name']}\n{t['description']}\n{json.dumps(t['input_schema'])}" for t in body["tools"])
    )
    assert count_tokens(body) - without_tools == pytest.approx(
        tools_text + TOOL_TOKENS * len(body["tools"]), rel=0.01
    )
    with_system = count_tokens({**body, "system": [{"type": "text", "text": "You are terse."}]})
    assert with_system - count_tokens(body) == MESSAGE_TOKENS + count_text("You are terse.")


def test_claude_code_first_turn_is_in_the_right_range() -> None:
    body = capture("cc_messages_first_turn_gpt55.json")
    n = count_tokens(body)
    everything = count_text(json.dumps(body, ensure_ascii=False))  # JSON syntax and keys inflate this one
    assert 0.7 * everything < n < everything
    assert n > 15_000  # 24 tools (64 KB of schemas) dominate a Claude Code request


@pytest.mark.parametrize(
    ("block", "counted"),
    [
        ({"type": "text", "text": "alpha beta gamma"}, "alpha beta gamma"),
        ({"type": "thinking", "thinking": "deep thoughts", "signature": "x" * 500}, "deep thoughts"),
        (
            {"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls -la"}},
            'Bash\n{"command": "ls -la"}',
        ),
        ({"type": "tool_result", "tool_use_id": "t", "content": "file1\nfile2"}, "file1\nfile2"),
        ({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "out"}]}, "out"),
        (
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc body"}},
            "doc body",
        ),
        ({"type": "redacted_thinking", "data": "opaque"}, ""),
    ],
)
def test_block_text(block: dict[str, Any], counted: str) -> None:
    assert count_tokens(one_message(block)) == BASE_TOKENS + MESSAGE_TOKENS + count_text(counted)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"type": "base64", "media_type": "image/png", "data": png(1000, 500)}, 85 + 170 * 2),
        ({"type": "base64", "media_type": "image/png", "data": png(100, 100)}, 85 + 170),
        (
            {"type": "base64", "media_type": "image/png", "data": png(4096, 4096)},
            85 + 170 * 4,
        ),  # 2048 -> 768x768
        (
            {"type": "base64", "media_type": "image/jpeg", "data": jpeg(4000, 3000)},
            85 + 170 * 4,
        ),  # -> 1024x768
        (
            {
                "type": "base64",
                "media_type": "image/gif",
                "data": b64(b"GIF89a" + (600).to_bytes(2, "little") + (300).to_bytes(2, "little")),
            },
            85 + 170 * 2,
        ),
        ({"type": "base64", "media_type": "image/webp", "data": b64(b"RIFF....WEBPVP8 ")}, IMAGE_TOKENS),
        ({"type": "base64", "media_type": "image/png", "data": "%%% not base64"}, IMAGE_TOKENS),
        ({"type": "url", "url": "https://x.test/a.png"}, IMAGE_TOKENS),
    ],
)
def test_image_estimates(source: dict[str, Any], expected: int) -> None:
    assert image_tokens(source) == expected
    assert (
        count_tokens(one_message({"type": "image", "source": source}))
        == BASE_TOKENS + MESSAGE_TOKENS + expected
    )


def test_images_inside_tool_results_count() -> None:
    result = {"type": "tool_result", "tool_use_id": "t", "content": [image(png(100, 100))]}
    assert count_tokens(one_message(result)) == BASE_TOKENS + MESSAGE_TOKENS + 255


def test_pdf_pages() -> None:
    pdf = b"%PDF-1.7\n1 0 obj <</Type /Pages /Count 3>>\n" + b"".join(
        b"<</Type /Page /Parent 1 0 R>>\n" for _ in range(3)
    )
    doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": b64(pdf)},
    }
    assert count_tokens(one_message(doc)) == BASE_TOKENS + MESSAGE_TOKENS + 3 * PDF_PAGE_TOKENS
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}
    assert count_tokens(one_message(url_doc)) == BASE_TOKENS + MESSAGE_TOKENS + PDF_PAGE_TOKENS


def test_more_content_never_counts_less() -> None:
    body = capture("cc_messages_parallel_tool_results.json")
    counts = [
        count_tokens({**body, "messages": body["messages"][:n]}) for n in range(1, len(body["messages"]) + 1)
    ]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


@pytest.mark.parametrize("body", [{}, {"messages": "hi"}, {"messages": None}])
def test_messages_must_be_a_list(body: dict[str, Any]) -> None:
    with pytest.raises(ProxyError) as err:
        count_tokens(body)
    assert err.value.status == 400


def test_malformed_blocks_are_skipped_not_fatal() -> None:
    body = {
        "messages": [{"role": "user", "content": [None, 5, {"type": "text"}, {"type": "image"}]}, "junk"],
        "tools": [None],
    }
    assert count_tokens(body) == BASE_TOKENS + 2 * MESSAGE_TOKENS + IMAGE_TOKENS


def fresh(body: dict[str, Any], marker: str) -> dict[str, Any]:
    """The same body with every tool and system block made new (so nothing is remembered yet)."""
    tools = [{**t, "description": f"{marker} {t['description']}"} for t in body["tools"]]
    system = [{**b, "text": f"{marker} {b['text']}"} for b in body["system"]]
    return {**body, "tools": tools, "system": system}


def timed(body: dict[str, Any], pieces: PieceCache) -> float:
    start = time.perf_counter()
    count_tokens(body, pieces)
    return (time.perf_counter() - start) * 1000


def test_a_100_kb_claude_code_request_counts_in_a_few_ms() -> None:
    body = capture("cc_messages_first_turn_sonnet45.json")  # ~114 KB of JSON
    assert len(json.dumps(body)) > 100_000
    pieces = PieceCache()
    count_tokens(body, pieces)  # loads the encoding
    cold = statistics.median(timed(fresh(body, f"run{n}"), pieces) for n in range(5))
    warm = statistics.median(
        timed(body, pieces) for _ in range(5)
    )  # the next turn: tools and system unchanged
    print(f"count_tokens on {len(json.dumps(body)) // 1024} KB: {cold:.1f} ms new, {warm:.1f} ms repeated")
    assert cold < 60 and warm < 10  # about 10 ms and 1 ms here; generous for a loaded CI machine
    assert count_tokens(fresh(body, "x"), pieces) > count_tokens(body, pieces)  # counted, not a stale entry
