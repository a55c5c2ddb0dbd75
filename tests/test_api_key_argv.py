"""`--api-key KEY` keeps working (0.1.6's users script it) but never stays in a command line, where every
local user reads it with `ps`: the process re-executes itself with the key in its environment before
anything runs, in the foreground as in the daemon."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from codex_api_proxy.cli.argv_key import without_api_key
from codex_api_proxy.cli.daemon import is_ours
from codex_api_proxy.testing.fake_backend import FakeBackend

from .conftest import ROOT, free_port, start_proxy, write_auth


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def key_works(url: str, key: str) -> bool:
    """The key is required and accepted: no key is a 401, the key a 200."""
    without = httpx.get(url + "/v1/models", trust_env=False, timeout=30).status_code
    with_key = httpx.get(url + "/v1/models", headers={"x-api-key": key}, trust_env=False, timeout=30)
    return without == 401 and with_key.status_code == 200


def test_foreground_start_moves_the_key_out_of_argv(tmp_path: Path, backend: FakeBackend) -> None:
    key = "local-key-" + secrets.token_hex(8)
    p = start_proxy(tmp_path, backend, extra_args=["--api-key", key])
    try:
        args = cmdline(p.process.pid)  # the same process: exec keeps the pid
        assert key.encode() not in args and b"--api-key" not in args
        assert b"start\0--foreground" in args and is_ours(p.process.pid)
        assert key_works(p.url, key)
    finally:
        p.stop()
    assert key not in p.log()


def test_daemon_start_moves_the_key_out_of_argv_and_says_where_it_came_from(
    tmp_path: Path, backend: FakeBackend
) -> None:
    write_auth(tmp_path / "home/.codex")
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")}
    env = {**keep, "HOME": str(tmp_path / "home"), "CODEX_API_PROXY_UPSTREAM_URL": backend.url}
    key = "daemon-key-" + secrets.token_hex(8)
    port = free_port()
    state = tmp_path / "home/.codex-api-proxy"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "codex_api_proxy", *args], env=env, capture_output=True,
                              text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)  # fmt: skip

    started = cli("start", "--port", str(port), f"--api-key={key}")
    try:
        assert started.returncode == 0, started.stderr
        pid = int((state / "codex-api-proxy.pid").read_text())
        assert key.encode() not in cmdline(pid)
        assert key_works(f"http://127.0.0.1:{port}", key)
        config = tomllib.loads((state / "config.toml").read_text())
        assert config["api_key_from"] == "command line" and "api_key_env" not in config  # as before
        assert key not in (state / "config.toml").read_text()
    finally:
        if cli("stop").returncode != 0 and (state / "codex-api-proxy.pid").exists():
            pid = int((state / "codex-api-proxy.pid").read_text())
            if is_ours(pid):
                os.kill(pid, signal.SIGKILL)


def test_which_arguments_leave_argv() -> None:
    assert without_api_key(["start", "--api-key", "k", "--port", "1"]) == (["start", "--port", "1"], "k")
    assert without_api_key(["restart", "--api-key=a", "--api-key", "b"]) == (["restart"], "b")  # the last
    assert without_api_key(["start", "--", "--api-key", "k"]) == (["start", "--", "--api-key", "k"], None)
    assert without_api_key(["status", "--api-key", "k"]) == (
        ["status", "--api-key", "k"],
        None,
    )  # no such option
    assert without_api_key(["start", "--api-key"]) == (
        ["start", "--api-key"],
        None,
    )  # click says what is missing
