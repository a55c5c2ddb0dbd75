"""Heartbeats follow what the client received, not what the upstream sent.

An upstream busy with events a chat client does not see (reasoning summaries without
--expose-reasoning) leaves the client as silent as an idle upstream; its read timeout does not care
why. The session proxy runs with --heartbeat 0.3.
"""

from __future__ import annotations

import httpx

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, reasoning, text

from .conftest import Proxy


def test_chat_client_gets_keepalives_while_the_upstream_sends_only_reasoning(
    proxy: Proxy, fake: FakeBackend
) -> None:
    # ~40 reasoning events 50 ms apart: the upstream is never silent for a heartbeat, the client is
    fake.enqueue(Turn(output=[reasoning(["step"] * 10), text("done", chunks=1)], delay=0.05))
    lines: list[str] = []
    with httpx.stream(
        "POST",
        proxy.v1 + "/chat/completions",
        json={"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "think"}]},
        timeout=30,
        trust_env=False,
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    first_content = next(n for n, line in enumerate(lines) if '"content":"done"' in line)
    keepalives = [line for line in lines[:first_content] if line.startswith(":")]
    assert len(keepalives) >= 2, lines  # the reasoning lasted several heartbeats
    assert lines[-1] == "data: [DONE]"
