"""Prompt-cache health: what changed in a conversation's prefix between turns, and a fallen cached
share, each reported as one cache_miss line (unit, and through the real proxy's log)."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest

from codex_api_proxy.core.cache_health import CacheHealth
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

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
        (request(tools=TOOLS[::-1], items=ITEMS[:3]), {"session_id": "s"}, ["tools reordered"]),
        (request(tools=[TOOLS[0], {"type": "function", "name": "AB"}, TOOLS[1]], items=ITEMS[:3]),
         {"session_id": "s"}, ["tool AB added at position 1, before earlier tools"]),
        (request(tools=[*TOOLS, {"type": "function", "name": "C"}]), {"session_id": "s"}, ["tool C added at the end"]),
        (request(tools=[TOOLS[0], {**TOOLS[1], "description": "d"}]), {"session_id": "s"},
         ["tool B changed (description)"]),
        (request(items=[ITEMS[0], ITEMS[3], ITEMS[2]]), {"session_id": "s"}, ["item 1 (content)"]),
        (request(items=ITEMS[:1]), {"session_id": "s"}, ["item 1 (history shortened)"]),
        (request(items=ITEMS[:3]), {"session_id": "t"}, ["session header"]),
        (request("x", TOOLS[:1], ITEMS[:3]), {}, ["instructions", "tool B removed", "session header"]),
        (request("x", TOOLS[:1], ITEMS[1:]), {"session_id": "s"}, []),  # shares nothing: a new thread
    ],
)  # fmt: skip
def test_prefix_changes_are_named(
    second: dict[str, Any], headers: dict[str, str], changed: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    health = CacheHealth()
    assert health.note_request("key", request(), {"session_id": "s"}).changed == []
    with caplog.at_level(logging.INFO, "codex_api_proxy"):
        assert health.note_request("key", second, headers).changed == changed
    lines = [r.getMessage() for r in caplog.records if "cache_miss" in r.getMessage()]
    assert len(lines) == (1 if changed else 0)
    if changed:
        assert ", ".join(changed) in lines[0] and "key" not in lines[0].split(":")[0].split()  # key digested


def test_a_fallen_cached_share_is_reported_only_with_an_unchanged_prefix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = CacheHealth()
    turns = [request(items=ITEMS[:n]) for n in (1, 2, 3, 4, 4)]
    turns[2:] = [{**t, "instructions": "moved"} for t in turns[2:]]
    usage = [(1000, 900), (1100, 1000), (1200, 100), (1300, 1200), (1400, 140)]
    with caplog.at_level(logging.INFO, "codex_api_proxy"):
        for body, (total, cached) in zip(turns, usage, strict=True):
            health.note_usage(health.note_request("k", body, {}), "k", "gpt-5.5", total, cached)
    lines = [r.getMessage() for r in caplog.records if "cache_miss" in r.getMessage()]
    # 90% -> 91% is fine; the fall to 8% is explained by the instructions line; 92% -> 10% is reported
    assert len(lines) == 2 and "instructions changed" in lines[0] and "fell from 92% to 10%" in lines[1]


def test_sub_agents_sharing_the_key_are_followed_as_their_own_threads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = CacheHealth()
    sub_items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"s{i}"}]}
                 for i in range(3)]  # fmt: skip
    main = [request(items=ITEMS[:n]) for n in (1, 2, 3)]
    sub = [request("You are a sub-agent.", TOOLS[:1], sub_items[:n]) for n in (1, 2)]
    headers = {"session_id": "session"}
    with caplog.at_level(logging.INFO, "codex_api_proxy"):
        for body in (main[0], sub[0], main[1], sub[1], main[2]):
            assert health.note_request("session", body, headers).changed == []
        moved = health.note_request("session", {**main[2], "instructions": "Be brief. 12:01"}, headers)
    assert moved.changed == ["instructions"]
    assert len(health.conversations["session"]) == 2
    assert len([r for r in caplog.records if "cache_miss" in r.getMessage()]) == 1


def test_the_conversation_store_is_bounded() -> None:
    health = CacheHealth(size=2)
    for key in ("a", "b", "c"):
        health.note_request(key, request(), {})
    assert list(health.conversations) == ["b", "c"]
    for n in range(12):  # and so are the threads of one key
        tools = [{"type": "function", "name": f"T{n}"}]
        health.note_request("c", request(f"agent {n}", tools, [{"n": n}]), {})
    assert len(health.conversations["c"]) == 8


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
