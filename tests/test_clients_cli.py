"""`codex-api-proxy claude` and `codex-api-proxy codex`: the real clients run through a daemon the
command starts itself (a fresh HOME with a Codex login, the fake backend as upstream), a client that is
not installed, and a client's exit status and signals passing through."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, text

from .clients import CLAUDE, CODEX, require
from .conftest import ROOT, Proxy, free_port, write_auth


def cli(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codex_api_proxy", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def person(tmp_path_factory: pytest.TempPathFactory, backend: FakeBackend) -> Iterator[dict[str, str]]:
    """A person with a Codex login and nothing running: the first client command starts the daemon."""
    tmp = tmp_path_factory.mktemp("person")
    codex_home = tmp / "home/.codex"
    write_auth(codex_home)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb", "HOME": str(tmp / "home"),
           "CODEX_HOME": str(codex_home), "CODEX_API_PROXY_PORT": str(free_port()),
           "CODEX_API_PROXY_UPSTREAM_URL": backend.url, "CODEX_REFRESH_TOKEN_URL_OVERRIDE": backend.token_url,
           "CODEX_API_PROXY_CLAUDE_BIN": str(CLAUDE), "CODEX_API_PROXY_CODEX_BIN": str(CODEX)}  # fmt: skip
    yield env
    cli("stop", env=env)


def workdir(tmp_path: Path) -> Path:
    """A project folder: a git repository, as the Codex CLI expects one."""
    work = tmp_path / "project"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return work


def test_claude_runs_a_tool_round_trip_through_the_daemon_it_starts(
    person: dict[str, str], fake: FakeBackend, tmp_path: Path
) -> None:
    require(CLAUDE)
    token = "tok" + secrets.token_hex(5)
    fake.enqueue(
        Turn(output=[function_call("Bash", {"command": f"echo {token}", "description": "Echo"})]),
        Turn(output=[text(f"The output was {token}.")]),
    )
    r = cli("claude", "-p", f"run echo {token}", "--allowedTools", "Bash", "--output-format", "stream-json",
            "--verbose", env=person, cwd=workdir(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    events = [
        json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")
    ]  # stdout: the client's
    assert next(e for e in events if e["type"] == "result")["result"] == f"The output was {token}."
    second = fake.responses_requests[1].body
    outputs = [i["output"] for i in second["input"] if i.get("type") == "function_call_output"]
    assert outputs and token in str(outputs[0])
    status = cli("status", env=person)  # the daemon it used is the person's, and still running
    assert status.returncode == 0 and "mode: chatgpt" in status.stdout
    assert not (Path(person["HOME"]) / ".claude/settings.json").exists()  # nothing written to settings


def test_codex_exec_runs_a_tool_round_trip(person: dict[str, str], fake: FakeBackend, tmp_path: Path) -> None:
    require(CODEX)
    token = "tok-" + secrets.token_hex(6)
    fake.enqueue(
        Turn(output=[function_call("exec_command", {"cmd": f"echo {token}"})]),
        Turn(output=[text(f"The command printed {token}.")]),
    )
    r = cli("codex", "exec", f"run echo {token}", env=person, cwd=workdir(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"The command printed {token}." in r.stdout
    first, second = fake.responses_requests[:2]
    assert first.body["model"] == "gpt-5.5"  # the model the map gives opus, as no model was named
    outputs = [i for i in second.body["input"] if i.get("type") == "function_call_output"]
    assert outputs and token in str(outputs[0]["output"])
    assert not (Path(person["CODEX_HOME"]) / "config.toml").exists()  # nothing written to config.toml


def test_a_missing_client_is_one_line_saying_how_to_install_it(
    person: dict[str, str], tmp_path: Path
) -> None:
    env = {**person, "PATH": str(tmp_path), "CODEX_API_PROXY_PORT": str(free_port())}
    for command, package in (("claude", "@anthropic-ai/claude-code"), ("codex", "@openai/codex")):
        env.pop(f"CODEX_API_PROXY_{command.upper()}_BIN")
        r = cli(command, "--version", env=env)
        assert r.returncode == 1 and r.stdout == ""
        (line,) = r.stderr.strip().splitlines()
        assert f"npm i -g {package}" in line and f"`{command}`" in line, line
    assert cli("status", env=env).returncode == 1  # no daemon was started for a client that is not there


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    """A client that records its argv and environment, then does what $STUB says."""
    path = tmp_path / "client"
    path.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$OUT.args"\nenv > "$OUT.env"\neval "$STUB"\n')
    path.chmod(0o755)
    return path


def stub_env(proxy: Proxy, stub: Path, tmp_path: Path, script: str) -> dict[str, str]:
    """A running proxy on the configured port (the session's): the command uses it, starting nothing."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "CODEX_API_PROXY_PORT": str(urlsplit(proxy.url).port),
            "CODEX_API_PROXY_CLAUDE_BIN": str(stub), "CODEX_API_PROXY_CODEX_BIN": str(stub),
            "ANTHROPIC_API_KEY": "sk-ant-person", "OUT": str(tmp_path / "out"), "STUB": script}  # fmt: skip


def recorded(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    args = (tmp_path / "out.args").read_text().splitlines()
    env = dict(line.split("=", 1) for line in (tmp_path / "out.env").read_text().splitlines() if "=" in line)
    return args, env


def test_the_clients_exit_status_and_settings_are_its_own(proxy: Proxy, stub: Path, tmp_path: Path) -> None:
    env = stub_env(proxy, stub, tmp_path, "exit 7")
    r = cli("claude", "-p", "hi", "--model", "x", env=env)
    assert r.returncode == 7, r.stderr
    args, seen = recorded(tmp_path)
    assert args == ["-p", "hi", "--model", "x"]
    assert seen["ANTHROPIC_BASE_URL"] == proxy.url and seen["ANTHROPIC_AUTH_TOKEN"]
    assert "ANTHROPIC_API_KEY" not in seen  # the person's Anthropic key is not sent to the proxy
    assert seen["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert seen["CLAUDE_CODE_AUTO_COMPACT_WINDOW"].isdigit()  # the model map's windows, from the catalog
    assert seen["ANTHROPIC_DEFAULT_OPUS_MODEL"].startswith("claude-opus")

    r = cli("codex", "exec", "hi", env={**env, "STUB": "exit 0"})
    assert r.returncode == 0, r.stderr
    args, seen = recorded(tmp_path)
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "-c"]
    assert 'model_provider="codex-api-proxy"' in overrides and "features.plugins=false" in overrides
    assert f'model_providers.codex-api-proxy.base_url="{proxy.v1}"' in overrides
    assert 'model_providers.codex-api-proxy.wire_api="responses"' in overrides
    assert args[-2:] == ["exec", "hi"]


def test_signals_reach_the_client(proxy: Proxy, stub: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"trap 'echo TERM > {ready}.got; exit 143' TERM; touch {ready}; while :; do sleep 0.1; done"
    proc = subprocess.Popen([sys.executable, "-m", "codex_api_proxy", "claude"], cwd=ROOT,
                            env=stub_env(proxy, stub, tmp_path, script), stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 143
        assert (tmp_path / "ready.got").read_text().strip() == "TERM"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_local_key_reaches_the_client_not_its_argv(
    person: dict[str, str], stub: Path, tmp_path: Path, backend: FakeBackend
) -> None:
    key = "k-" + secrets.token_hex(6)
    env = {**person, "CODEX_API_PROXY_PORT": str(free_port()), "CODEX_API_PROXY_CONFIG": str(tmp_path / "k.toml"),
           "CODEX_API_PROXY_API_KEY": key, "CODEX_API_PROXY_CLAUDE_BIN": str(stub),
           "CODEX_API_PROXY_CODEX_BIN": str(stub), "OUT": str(tmp_path / "out"), "STUB": "exit 0"}  # fmt: skip
    try:
        r = cli("claude", "-p", "hi", env=env)  # starts a daemon that wants the key
        assert r.returncode == 0 and "running on" in r.stderr and r.stdout == "", r.stderr
        args, seen = recorded(tmp_path)
        assert seen["ANTHROPIC_AUTH_TOKEN"] == key and key not in " ".join(args)
        assert seen["CLAUDE_CODE_AUTO_COMPACT_WINDOW"].isdigit()  # the catalog was read with the key
        r = cli("codex", "exec", "hi", env=env)
        assert r.returncode == 0, r.stderr
        args, seen = recorded(tmp_path)
        assert 'model_providers.codex-api-proxy.env_key="CODEX_API_PROXY_API_KEY"' in args
        assert seen["CODEX_API_PROXY_API_KEY"] == key and key not in " ".join(args)
    finally:
        cli("stop", env=env)
