"""End to end: the real Codex CLIs (the pinned one and the newest) on /v1/responses through the proxy:
a tool round trip, retries, refusals and a usage limit."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, reasoning, text

from .clients import CODEX, CODEX_NEW, run_codex
from .conftest import Proxy

pytestmark = pytest.mark.e2e


@pytest.fixture(params=[CODEX, CODEX_NEW], ids=["codex-pinned", "codex-newest"])
def codex(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_codex_exec_runs_a_command_and_answers(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, codex: Path
) -> None:
    token = "tok-" + secrets.token_hex(6)
    fake.enqueue(
        Turn(output=[reasoning("I should run it."), function_call("exec_command", {"cmd": f"echo {token}"})]),
        Turn(output=[text(f"The command printed {token}.")]),
    )
    cp = run_codex(proxy.v1, f"run echo {token}", tmp_path, binary=codex)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert f"The command printed {token}." in cp.stdout
    first, second = fake.responses_requests[:2]
    assert first.body["stream"] is True and first.body["store"] is False
    # Codex's own conversation ids go upstream as it spelled them, the same on both turns
    assert first.headers["session-id"] == second.headers["session-id"] and "session_id" not in first.headers
    assert first.headers["thread-id"] and first.headers["x-client-request-id"]
    outputs = [i for i in second.body["input"] if i.get("type") == "function_call_output"]
    assert outputs and token in str(outputs[0]["output"])
    calls = [i for i in second.body["input"] if i.get("type") == "function_call"]
    assert calls[0]["call_id"] == outputs[0]["call_id"]
    # the reasoning item came back with the encrypted content the backend issued
    assert any(i.get("type") == "reasoning" and i.get("encrypted_content") for i in second.body["input"])
    assert fake.accepted_encrypted_content


def test_codex_exec_retries_an_upstream_500(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, codex: Path
) -> None:
    fake.enqueue(Turn.http_error(500, "backend hiccup"), Turn(output=[text("second time lucky")]))
    cp = run_codex(proxy.v1, "say hi", tmp_path, binary=codex)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "second time lucky" in cp.stdout
    assert len(fake.responses_requests) == 2


def test_codex_exec_reports_a_refused_request(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, codex: Path
) -> None:
    fake.enqueue(Turn.http_error(400, "Instructions are not valid"))
    cp = run_codex(proxy.v1, "say hi", tmp_path, binary=codex)
    assert cp.returncode != 0
    assert "Instructions are not valid" in cp.stdout + cp.stderr


def test_codex_exec_shows_a_usage_limit_and_does_not_retry(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, codex: Path
) -> None:
    fake.enqueue(Turn.usage_limit(resets_in_seconds=3 * 3600), Turn(output=[text("must not be reached")]))
    cp = run_codex(proxy.v1, "say hi", tmp_path, binary=codex)
    shown = cp.stdout + cp.stderr
    assert cp.returncode != 0
    assert "usage limit" in shown.lower(), shown[-3000:]
    assert "retry limit" not in shown.lower()
    assert len(fake.responses_requests) == 1
    assert fake.pending() == 1


def upgrade_answers(proxy: Proxy) -> dict[str, int]:
    """How many requests the proxy answered with an error, by status (/metrics): while Codex runs alone
    against a fake that succeeds, those are its WebSocket upgrades."""
    errors = httpx.get(proxy.url + "/metrics", trust_env=False, timeout=10).json()["errors_by_status"]
    return {status: int(n) for status, n in errors.items()}


def test_codex_exec_with_websockets_falls_back_to_http_after_one_426(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, codex: Path
) -> None:
    """A provider with `supports_websockets = true` opens the Responses WebSocket first; the proxy's 426
    makes it fall back to HTTP on the first try (a 405 costs it 7 attempts and ~7 s here)."""
    before = upgrade_answers(proxy)
    fake.enqueue(Turn(output=[text("answered over HTTP")]))
    cp = run_codex(proxy.v1, "say hi", tmp_path, binary=codex, provider={"supports_websockets": True})
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "answered over HTTP" in cp.stdout
    after = upgrade_answers(proxy)
    grew = {status: n - before.get(status, 0) for status, n in after.items() if n != before.get(status, 0)}
    assert grew == {"426": 1}  # one upgrade attempt, answered 426, and no other answer
    assert len(fake.responses_requests) == 1
