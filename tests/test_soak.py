"""A bounded soak through the real proxy: mixed families, streaming and not, injected faults, c=32.

Every request names its own scripted answer (the fake answers by what the request says, so order does
not matter under concurrency): a success must carry exactly its text, a fault must surface as an
error the client can see, and afterwards the proxy's descriptors and memory are back where they were.
CI runs SOAK_REQUESTS (default 400); the issue's full run is SOAK_REQUESTS=2000.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Recorded, Turn, text

from .conftest import Proxy, start_proxy

pytestmark = pytest.mark.slow

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "400"))
TAG = re.compile(r"soak-(\d+)-(\w+)")
FAULTS = ("cut", "fail", "http500")


def scripted(rec: Recorded) -> Turn:
    found = TAG.search(json.dumps(rec.body))
    if not found:
        return Turn()
    n, kind = found.groups()
    answer = [text(f"answer-{n}", chunks=4)]
    if kind == "cut":
        return Turn(output=answer, cut_after=3)
    if kind == "fail":
        return Turn(output=answer, fail={"code": "server_error", "message": f"fault-{n}"})
    if kind == "http500":
        return Turn.http_error(500, f"fault-{n}")
    return Turn(output=answer)


def request(family: str, prompt: str, stream: bool) -> tuple[str, dict]:
    if family == "chat":
        return "/v1/chat/completions", {
            "model": "gpt-5.5",
            "stream": stream,
            "messages": [{"role": "user", "content": prompt}],
        }
    if family == "messages":
        return "/v1/messages", {
            "model": "gpt-5.5",
            "max_tokens": 64,
            "stream": stream,
            "messages": [{"role": "user", "content": prompt}],
        }
    return "/v1/responses", {"model": "gpt-5.5", "stream": stream, "input": prompt}


def streamed_text(family: str, body: str) -> tuple[str, bool]:
    """(the text a client would show, whether the stream ended cleanly)."""
    parts, clean = [], False
    for line in body.splitlines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            clean = True
            continue
        event = json.loads(data)
        if family == "chat":
            if "error" in event:
                return "".join(parts), False
            for choice in event.get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
        elif family == "messages":
            if event.get("type") == "error":
                return "".join(parts), False
            if event.get("type") == "content_block_delta":
                parts.append(event["delta"].get("text", ""))
            clean = clean or event.get("type") == "message_stop"
        else:
            if event.get("type") in ("error", "response.failed"):
                return "".join(parts), False
            if event.get("type") == "response.output_text.delta":
                parts.append(event["delta"])
            clean = clean or event.get("type") == "response.completed"
    return "".join(parts), clean


def whole_text(family: str, body: dict) -> str:
    if family == "chat":
        return body["choices"][0]["message"]["content"]
    if family == "messages":
        return "".join(b.get("text", "") for b in body["content"])
    return body["output_text"]


def one(proxy: Proxy, client: httpx.Client, n: int) -> str | None:
    """None when the client saw what it should; else what went wrong."""
    family = ("chat", "messages", "responses")[n % 3]
    stream = n % 2 == 0
    kind = FAULTS[n % 3] if n % 20 == 7 else "ok"  # ~5% faults
    path, body = request(family, f"soak-{n}-{kind}", stream)
    r = client.post(proxy.url + path, json=body)
    if kind == "ok":
        if r.status_code != 200:
            return f"{n} {family} stream={stream}: HTTP {r.status_code} {r.text[:200]}"
        got, clean = streamed_text(family, r.text) if stream else (whole_text(family, r.json()), True)
        return None if (got, clean) == (f"answer-{n}", True) else f"{n} {family}: got {got!r} clean={clean}"
    if r.status_code >= 400:
        return None
    if not stream:
        return f"{n} {family} {kind}: a fault answered {r.status_code}"
    _, clean = streamed_text(family, r.text)
    return f"{n} {family} {kind}: a fault ended as a clean stream" if clean else None


def requests_total(proxy: Proxy) -> int:
    return httpx.get(proxy.url + "/metrics", trust_env=False).json()["requests_total"]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def test_soak_mixed_families_with_faults(tmp_path: Path, backend: FakeBackend) -> None:
    backend.clear()
    backend.default_turn = scripted
    p = start_proxy(tmp_path, backend, log_level="warning")
    try:

        def soak(numbers: range) -> list[str]:
            clients = [httpx.Client(trust_env=False, timeout=60) for _ in range(32)]
            with ThreadPoolExecutor(32) as pool:
                problems = [x for x in pool.map(lambda n: one(p, clients[n % 32], n), numbers) if x]
            for c in clients:
                c.close()
            return problems

        # warm up at the same concurrency: the upstream pool fills to what 32 clients need, and stays
        assert soak(range(100_000, 100_000 + 96)) == []
        time.sleep(0.5)
        fds_before, rss_before = fds(p.process.pid), rss_kb(p.process.pid)
        counted_before = requests_total(p)
        problems = soak(range(REQUESTS))
        assert problems == [], problems[:10]
        deadline = time.monotonic() + 10
        while fds(p.process.pid) > fds_before + 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fds(p.process.pid) <= fds_before + 4, "descriptors leaked"
        assert rss_kb(p.process.pid) - rss_before < 40_000, "memory grew"
        # every request counted exactly once (the first /metrics read counts itself once it is answered)
        assert requests_total(p) - counted_before == REQUESTS + 1
    finally:
        backend.default_turn = lambda rec: Turn()
        backend.clear()
        p.stop()
