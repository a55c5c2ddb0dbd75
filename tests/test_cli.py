"""The command line: daemon lifecycle, doctor, demo, and mitmdump on the addon script."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.fake_backend import FakeBackend, Turn, text

from .conftest import ROOT, free_port, write_auth


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codex_api_proxy", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, backend: FakeBackend) -> dict[str, str]:
    write_auth(tmp_path / "codex-home")
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")}
    return {**keep, "HOME": str(tmp_path / "home"), "CODEX_HOME": str(tmp_path / "codex-home"),
            "CODEX_API_PROXY_STATE_DIR": str(tmp_path / "state"), "CODEX_API_PROXY_UPSTREAM_URL": backend.url}  # fmt: skip


def test_daemon_start_status_stop(env: dict[str, str], fake: FakeBackend, tmp_path: Path) -> None:
    port = str(free_port())
    env = {**env, "CODEX_API_PROXY_PORT": port}
    started = cli("start", "--api-key", "daemon-key-xyz", env=env)  # in our argv; never in the daemon's
    try:
        assert started.returncode == 0, started.stderr
        assert "started" in started.stdout
        pid = int((tmp_path / "state/codex-api-proxy.pid").read_text())
        assert b"daemon-key-xyz" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert "daemon-key-xyz" not in (tmp_path / "state/state.toml").read_text()
        status = cli("status", env=env)
        assert status.returncode == 0 and "running" in status.stdout
        fake.enqueue(Turn(output=[text("from the daemon")]))
        r = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={"model": "gpt-5.5", "input": "hi"},
                       headers={"x-api-key": "daemon-key-xyz"}, trust_env=False, timeout=30)  # fmt: skip
        assert r.json()["output_text"] == "from the daemon"
        again = cli("start", env=env)
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        stopped = cli("stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert cli("status", env=env).returncode == 1


def test_start_reports_a_taken_port(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli("start", "--port", str(s.getsockname()[1]), env=env)
    assert r.returncode != 0
    assert "exited" in r.stderr or "did not answer" in r.stderr


def test_doctor(env: dict[str, str], tmp_path: Path) -> None:
    r = cli("doctor", "--port", str(free_port()), env=env)
    assert r.returncode == 0, r.stdout
    assert "chatgpt mode" in r.stdout and "access-token-1" not in r.stdout
    (tmp_path / "codex-home/auth.json").unlink()
    r = cli("doctor", "--port", str(free_port()), env=env)
    assert r.returncode == 1
    assert "codex login" in r.stdout


def test_demo_needs_no_login(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    r = cli("demo", "--once", env=env, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "POST /v1/chat/completions -> 200" in r.stdout
    assert "POST /v1/messages         -> 200" in r.stdout
    assert "POST /v1/responses        -> 200" in r.stdout


def test_mitmdump_runs_the_same_addon(env: dict[str, str], fake: FakeBackend, tmp_path: Path) -> None:
    port = free_port()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    args = [str(mitmdump), "-q", "-s", str(ROOT / "addons/codex_api_proxy.py"), "--mode",
            f"reverse:http://127.0.0.1:9@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
            "--set", f"confdir={tmp_path / 'mitm'}"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        fake.enqueue(Turn(output=[text("via mitmdump")]))
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", trust_env=False, timeout=30,
                       json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "via mitmdump"
    finally:
        proc.terminate()
        proc.wait(10)
