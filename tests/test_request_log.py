"""One log line per request at info: what was asked and sent, how it went, how long, how many tokens;
never a token, a key or prompt text. Text by default, JSON keys with --log-format json."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import ACCESS_TOKEN, start_proxy

SECRET_PROMPT = "a prompt that must never be logged"


def exchange(url: str, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("answered")]), Turn.http_error(502))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": SECRET_PROMPT}]}  # fmt: skip
    headers = {"x-request-id": "req-log-1", "authorization": "Bearer local-key-9"}
    with httpx.stream(
        "POST", url + "/v1/messages", json=body, headers=headers, trust_env=False, timeout=30
    ) as r:
        assert r.status_code == 200
        r.read()
    r = httpx.post(url + "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "x"}]},
                   headers={**headers, "x-request-id": "req-log-2"}, trust_env=False, timeout=30)  # fmt: skip
    assert r.status_code == 502
    assert (
        httpx.get(
            url + "/v1/nope", headers={**headers, "x-request-id": "req-log-3"}, trust_env=False
        ).status_code
        == 404
    )


def test_one_text_line_per_request(tmp_path: Path, backend: FakeBackend) -> None:
    backend.clear()
    p = start_proxy(tmp_path, backend, log_level="info", env={"CODEX_API_PROXY_API_KEY": "local-key-9"})
    try:
        exchange(p.url, backend)
    finally:
        p.stop()
    log = p.log()
    (ok,) = [line for line in log.splitlines() if "req-log-1" in line]
    for part in ("POST /v1/messages anthropic", "model=claude-sonnet-4-5->gpt-5.5", "status=200", "stream=True",
                 "ttfb=", "duration=", "tokens="):  # fmt: skip
        assert part in ok, ok
    (failed,) = [line for line in log.splitlines() if "req-log-2" in line]
    assert "status=502" in failed and "error=" in failed
    (missing,) = [line for line in log.splitlines() if "req-log-3" in line]
    assert "status=404" in missing
    for secret in (SECRET_PROMPT, "local-key-9", ACCESS_TOKEN):
        assert secret not in log


def test_json_lines_with_log_format_json(tmp_path: Path, backend: FakeBackend) -> None:
    backend.clear()
    p = start_proxy(tmp_path, backend, log_level="info", extra_args=["--log-format", "json"],
                    env={"CODEX_API_PROXY_API_KEY": "local-key-9"})  # fmt: skip
    try:
        exchange(p.url, backend)
    finally:
        p.stop()
    records = [json.loads(line) for line in p.log().splitlines() if line.startswith("{")]
    (ok,) = [r for r in records if r.get("request_id") == "req-log-1"]
    assert ok["route"] == "/messages" and ok["family"] == "anthropic" and ok["status"] == 200
    assert ok["model"] == "claude-sonnet-4-5" and ok["model_sent"] == "gpt-5.5" and ok["stream"] is True
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["duration_ms"] >= ok["ttfb_ms"] >= 0
    (failed,) = [r for r in records if r.get("request_id") == "req-log-2"]
    assert failed["status"] == 502 and failed["error"]
    for secret in (SECRET_PROMPT, "local-key-9", ACCESS_TOKEN):
        assert secret not in p.log()
