"""End to end: the real Codex CLI on /v1/responses through the proxy, with a tool round trip."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from codex_api_proxy.fake_backend import FakeBackend, Turn, function_call, reasoning, text

from .clients import run_codex
from .conftest import Proxy

pytestmark = pytest.mark.e2e


def test_codex_exec_runs_a_command_and_answers(proxy: Proxy, fake: FakeBackend, tmp_path: Path) -> None:
    token = "tok-" + secrets.token_hex(6)
    fake.enqueue(
        Turn(output=[reasoning("I should run it."), function_call("exec_command", {"cmd": f"echo {token}"})]),
        Turn(output=[text(f"The command printed {token}.")]),
    )
    cp = run_codex(proxy.v1, f"run echo {token}", tmp_path)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert f"The command printed {token}." in cp.stdout
    first, second = fake.responses_requests[:2]
    assert first.body["stream"] is True and first.body["store"] is False
    outputs = [i for i in second.body["input"] if i.get("type") == "function_call_output"]
    assert outputs and token in str(outputs[0]["output"])
    calls = [i for i in second.body["input"] if i.get("type") == "function_call"]
    assert calls[0]["call_id"] == outputs[0]["call_id"]
    # the reasoning item came back with the encrypted content the backend issued
    assert any(i.get("type") == "reasoning" and i.get("encrypted_content") for i in second.body["input"])
    assert fake.accepted_encrypted_content


def test_codex_exec_retries_an_upstream_500(proxy: Proxy, fake: FakeBackend, tmp_path: Path) -> None:
    fake.enqueue(Turn.http_error(500, "backend hiccup"), Turn(output=[text("second time lucky")]))
    cp = run_codex(proxy.v1, "say hi", tmp_path)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "second time lucky" in cp.stdout
    assert len(fake.responses_requests) == 2


def test_codex_exec_reports_a_refused_request(proxy: Proxy, fake: FakeBackend, tmp_path: Path) -> None:
    fake.enqueue(Turn.http_error(400, "Instructions are not valid"))
    cp = run_codex(proxy.v1, "say hi", tmp_path)
    assert cp.returncode != 0
    assert "Instructions are not valid" in cp.stdout + cp.stderr
