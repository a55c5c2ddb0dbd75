"""count_tokens calibrated by what the backend reported for earlier turns of the same conversation, and
how far the local count is from the request that really goes upstream (the fixtures' error report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from codex_api_proxy.core import tokens
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text
from codex_api_proxy.translate.anthropic import to_upstream
from codex_api_proxy.translate.base import RequestContext

FIXTURES = Path(__file__).parent / "fixtures"
ANTHROPIC = {"anthropic-version": "2023-06-01"}


def capture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())["body"]


def test_calibration_store_scales_by_the_latest_ratio_within_bounds() -> None:
    store = tokens.Calibration(size=2)
    assert store.apply("a", 1000) == 1000  # nothing known yet
    store.observe("a", 1000, 1200)
    assert store.apply("a", 2000) == 2400
    store.observe("a", 1000, 1100)  # the latest turn wins
    assert store.apply("a", 2000) == 2200
    store.observe("a", 1000, 9000)  # not the same request: ignored
    store.observe("b", 0, 100)
    assert store.apply("a", 2000) == 2200 and store.apply("b", 10) == 10
    store.observe("b", 10, 12)
    store.observe("c", 10, 8)  # size 2: the least recently seen conversation goes
    assert store.apply("a", 100) == 100 and store.apply("c", 100) == 80


def body_of(session_text: str) -> dict[str, Any]:
    return {"model": "claude-opus-4-5", "max_tokens": 200, "system": "Be brief.",
            "messages": [{"role": "user", "content": f"Tell me about {session_text}."}]}  # fmt: skip


def count(http: httpx.Client, body: dict[str, Any], session: str) -> int:
    counted = {k: v for k, v in body.items() if k in ("model", "system", "messages", "tools")}
    headers = {**ANTHROPIC, "x-claude-code-session-id": session}
    answer = http.post("/v1/messages/count_tokens", json=counted, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["input_tokens"]


@pytest.mark.parametrize("stream", [True, False])
def test_count_tokens_follows_the_backends_count_for_the_same_conversation(
    http: httpx.Client, fake: FakeBackend, stream: bool
) -> None:
    session, other = f"calib-{stream}-1", f"calib-{stream}-2"
    body = body_of("the sea")
    local = tokens.count_tokens(body)
    assert count(http, body, session) == local  # no turn finished yet: the local count
    upstream = round(local * 1.3)
    fake.enqueue(Turn(output=[text("Waves.")], usage={"input_tokens": upstream, "output_tokens": 2}))
    sent = http.post("/v1/messages", json={**body, "stream": stream},
                     headers={**ANTHROPIC, "x-claude-code-session-id": session})  # fmt: skip
    assert sent.status_code == 200
    assert count(http, body, session) == upstream  # the same request: exactly what the backend said
    longer = {**body, "messages": [*body["messages"], {"role": "assistant", "content": "Waves."},
                                   {"role": "user", "content": "And the tides? " * 50}]}  # fmt: skip
    assert count(http, longer, session) == round(tokens.count_tokens(longer) * upstream / local)
    assert count(http, body, other) == local  # another conversation is not affected
    probe = http.post("/v1/messages", json={**body, "max_tokens": 1},
                      headers={**ANTHROPIC, "x-claude-code-session-id": session})  # fmt: skip
    assert probe.json()["usage"]["input_tokens"] == upstream  # Claude Code's count_tokens fallback too


def upstream_text(upstream: dict[str, Any]) -> str:
    """The text the backend tokenises for a translated request: instructions, every input item's text,
    arguments and outputs, and the tools as JSON (its own rendering adds a little around each)."""
    parts = [upstream.get("instructions") or ""]
    for item in upstream["input"]:
        if item.get("type") == "message":
            parts += [p.get("text") or "" for p in item["content"]]
        elif item.get("type") == "function_call":
            parts.append(item["name"] + item["arguments"])
        elif item.get("type") == "function_call_output":
            out = item["output"]
            parts.append(out if isinstance(out, str) else "".join(p.get("text") or "" for p in out))
        elif item.get("type") == "reasoning":
            parts += [s["text"] for s in item.get("summary") or []]
    parts += [json.dumps(t, ensure_ascii=False) for t in upstream.get("tools") or []]
    return "\n".join(parts)


CAPTURES = sorted(p.name for p in FIXTURES.glob("cc_messages_*.json"))


@pytest.mark.parametrize("name", CAPTURES)
def test_local_count_is_close_to_the_upstream_request(name: str) -> None:
    """The error report: local count vs the o200k tokens of what is really sent upstream."""
    body = capture(name)
    sent = to_upstream(body, RequestContext(model=body["model"]))
    local, upstream = tokens.count_tokens(body), tokens.count_text(upstream_text(sent))
    error = local / upstream - 1
    print(f"{name}: local {local}, upstream {upstream}, error {error:+.1%}")
    assert abs(error) < 0.10
