"""Prompt-cache health: what changed in a conversation's prefix between turns, and a fallen cached
share, each reported as one cache_miss line (unit, and through the real proxy's log)."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest

from codex_api_proxy.cache_health import CacheHealth
from codex_api_proxy.fake_backend import FakeBackend, Turn, text

from .conftest import Proxy

ITEMS = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"m{i}"}]}
    for i in range(4)
]
TOOLS = [{"type": "function", "name": "A"}, {"type": "function", "name": "B"}]


def request(
    instructions: str = "Be brief.", tools: list | None = None, items: list | None = None
) -> dict[str, Any]:
    return {"model": "gpt-5.5", "instructions": instructions, "tools": TOOLS if tools is None else tools,
            "input": ITEMS[:2] if items is None else items}  # fmt: skip


@pytest.mark.parametrize(
    ("second", "headers", "changed"),
    [
        (request(items=ITEMS[:3]), {"session_id": "s"}, []),  # appended: the prefix held
        (request("Be brief. 12:01"), {"session_id": "s"}, ["instructions"]),
        (request(tools=TOOLS[::-1], items=ITEMS[:3]), {"session_id": "s"}, ["tools"]),
        (request(items=[ITEMS[0], ITEMS[3], ITEMS[2]]), {"session_id": "s"}, ["item 1"]),
        (request(items=ITEMS[:1]), {"session_id": "s"}, ["item 1 (history shortened)"]),
        (request(items=ITEMS[:3]), {"session_id": "t"}, ["session header"]),
        (request("x", TOOLS[:1], ITEMS[1:]), {}, ["instructions", "tools", "item 0", "session header"]),
    ],
)  # fmt: skip
def test_prefix_changes_are_named(
    second: dict[str, Any], headers: dict[str, str], changed: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    health = CacheHealth()
    assert health.note_request("key", request(), {"session_id": "s"}) == []
    with caplog.at_level(logging.INFO, "codex_api_proxy"):
        assert health.note_request("key", second, headers) == changed
    lines = [r.getMessage() for r in caplog.records if "cache_miss" in r.getMessage()]
    assert len(lines) == (1 if changed else 0)
    if changed:
        assert ", ".join(changed) in lines[0] and "key" not in lines[0].split(":")[0].split()  # key digested


def test_a_fallen_cached_share_is_reported_only_with_an_unchanged_prefix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = CacheHealth()
    health.note_request("k", request(), {})
    with caplog.at_level(logging.INFO, "codex_api_proxy"):
        health.note_usage("k", "gpt-5.5", 1000, 900, prefix_changed=False)  # first turn: nothing to compare
        health.note_usage("k", "gpt-5.5", 1100, 1000, prefix_changed=False)  # 90% -> 91%: fine
        health.note_usage("k", "gpt-5.5", 1200, 100, prefix_changed=True)  # explained by the prefix line
        health.note_usage("k", "gpt-5.5", 1300, 1200, prefix_changed=False)
        health.note_usage("k", "gpt-5.5", 1400, 140, prefix_changed=False)  # 92% -> 10%: reported
    lines = [r.getMessage() for r in caplog.records if "cache_miss" in r.getMessage()]
    assert len(lines) == 1 and "fell from 92% to 10%" in lines[0]


def test_the_conversation_store_is_bounded() -> None:
    health = CacheHealth(size=2)
    for key in ("a", "b", "c"):
        health.note_request(key, request(), {})
    assert list(health.conversations) == ["b", "c"]


def wait_for(proxy: Proxy, needle: str, start: int) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tail = proxy.log()[start:]
        if needle in tail:
            return tail
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not in the proxy log:\n{proxy.log()[start:][-3000:]}")


def test_the_proxy_logs_a_changed_system_prompt_and_a_fallen_cached_share(
    proxy: Proxy, fake: FakeBackend, http: httpx.Client
) -> None:
    headers = {"anthropic-version": "2023-06-01", "x-claude-code-session-id": "cache-health-e2e"}

    def turn(system: str, cached: int, *history: dict[str, Any]) -> None:
        fake.enqueue(Turn(output=[text("ok")], usage={"input_tokens": 1000, "output_tokens": 1,
                                                      "input_tokens_details": {"cached_tokens": cached}}))  # fmt: skip
        body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "system": system, "stream": True,
                "messages": [*history, {"role": "user", "content": "hi"}]}  # fmt: skip
        assert http.post("/v1/messages", json=body, headers=headers).status_code == 200

    start = len(proxy.log())
    turn("You are terse. Time: 12:00", 0)
    turn("You are terse. Time: 12:01", 0)  # a moving system line
    tail = wait_for(proxy, "cache_miss", start)
    assert (
        "instructions changed since the previous turn" in tail
        and "hi" not in tail.split("cache_miss")[1][:200]
    )
    earlier = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    turn("You are terse. Time: 12:01", 900, *earlier)
    turn("You are terse. Time: 12:01", 50, *earlier, *earlier)
    tail = wait_for(proxy, "fell from 90% to 5%", start)
    assert tail.count("cache_miss") == 2
