"""The command line through real subprocesses with a temp HOME: an honest start, a trusted pid file,
the saved config read back by restart/status/doctor, one-line errors, and mitmdump on the shipped script."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.cli.daemon import is_ours
from codex_api_proxy.core.models import claude_code_settings
from codex_api_proxy.core.options import API_KEY_OPTION, CONFIG_OPTION, OPTIONS
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, make_jwt, text

from .conftest import ROOT, Proxy, free_port, write_auth


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codex_api_proxy", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture
def env(tmp_path: Path, backend: FakeBackend) -> Iterator[dict[str, str]]:
    """A person's environment: a temp HOME with a Codex login; the daemon is stopped afterwards."""
    write_auth(tmp_path / "home/.codex")
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")}
    env = {**keep, "HOME": str(tmp_path / "home"), "CODEX_API_PROXY_UPSTREAM_URL": backend.url,
           "CODEX_REFRESH_TOKEN_URL_OVERRIDE": backend.token_url}  # fmt: skip
    yield env
    if cli("stop", env=env).returncode != 0:  # never leave a daemon behind, even when stop is broken
        pid_file = tmp_path / "home/.codex-api-proxy/codex-api-proxy.pid"
        if pid_file.exists() and is_ours(pid := int(pid_file.read_text())):
            os.kill(pid, signal.SIGKILL)


def state(tmp_path: Path) -> Path:
    return tmp_path / "home/.codex-api-proxy"


def daemon_pid(tmp_path: Path) -> int:
    return int((state(tmp_path) / "codex-api-proxy.pid").read_text())


def argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_start_status_request_restart_stop(env: dict[str, str], fake: FakeBackend, tmp_path: Path) -> None:
    port = free_port()
    key = "daemon-key-" + os.urandom(4).hex()
    given = {"--port": str(port), "--heartbeat": "2.5", "--idle-timeout": "99.0", "--model-map": "opus=gpt-5.4",
             "--models-cache-ttl": "7.0", "--log-format": "json", "--log-level": "debug",
             "--first-byte-timeout": "55.0", "--connect-timeout": "5.0"}  # fmt: skip
    options = [*(x for pair in given.items() for x in pair), "--expose-reasoning"]
    started = cli("start", *options, env={**env, "CODEX_API_PROXY_API_KEY": key})
    assert started.returncode == 0, started.stderr
    assert f"running on http://127.0.0.1:{port}" in started.stdout
    pid = daemon_pid(tmp_path)

    status = cli("status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    out = status.stdout
    assert f":{port}" in out and f"pid {pid}" in out and "mode: chatgpt" in out and "up " in out
    assert "acct…-1" in out and "acct-test-1" not in out  # the account, masked
    assert f"upstream: {fake.url}" in out

    fake.enqueue(Turn(output=[text("from the daemon")]))
    r = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={"model": "gpt-5.5", "input": "hi"},
                   headers={"x-api-key": key}, trust_env=False, timeout=30)  # fmt: skip
    assert r.json()["output_text"] == "from the daemon"
    with_key = cli("status", "--verbose", env={**env, "CODEX_API_PROXY_API_KEY": key}).stdout
    assert "requests: 1\n" in with_key and "  /responses 2xx: 1\n" in with_key
    assert "stored responses and items: 2 entries" in with_key  # its turn and its output message

    config_file = state(tmp_path) / "config.toml"
    before = tomllib.loads(config_file.read_text())
    assert before["api_key_env"] == "CODEX_API_PROXY_API_KEY" and key not in config_file.read_text()
    restarted = cli("restart", env={**env, "CODEX_API_PROXY_API_KEY": key})
    assert restarted.returncode == 0, restarted.stderr
    new_pid = daemon_pid(tmp_path)
    assert new_pid != pid and not is_ours(pid)  # gone (at most a zombie waiting for init)
    assert tomllib.loads(config_file.read_text()) == before
    args = argv(new_pid)
    assert {flag: args[args.index(flag) + 1] for flag in given} == given  # every saved option came back
    assert "--expose-reasoning" in args
    assert not any(key in a for a in args)  # the key is in no argv, and not in any file
    assert key not in (state(tmp_path) / "codex-api-proxy.log").read_text()
    # restarted with the key: it is still required
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", trust_env=False).status_code == 401
    # JSON log lines, as saved
    assert any(
        line.startswith("{") for line in (state(tmp_path) / "codex-api-proxy.log").read_text().splitlines()
    )

    for path in (state(tmp_path), config_file, state(tmp_path) / "codex-api-proxy.pid",
                 state(tmp_path) / "codex-api-proxy.log"):  # fmt: skip
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path

    stopped = cli("stop", env=env)
    assert stopped.returncode == 0 and f"stopped (pid {new_pid})" in stopped.stdout
    assert not is_ours(new_pid)
    assert cli("status", env=env).returncode == 1


def test_restart_without_the_key_it_was_started_with_refuses(env: dict[str, str], tmp_path: Path) -> None:
    port = str(free_port())
    assert cli("start", "--port", port, env={**env, "CODEX_API_PROXY_API_KEY": "k-123456"}).returncode == 0
    r = cli("restart", env=env)
    assert r.returncode != 0
    assert "CODEX_API_PROXY_API_KEY" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert cli("status", env=env).returncode == 0  # the running daemon was left as it was


def test_busy_port_ours_and_foreign(env: dict[str, str], tmp_path: Path) -> None:
    port = str(free_port())
    assert cli("start", "--port", port, env=env).returncode == 0
    other = {**env, "CODEX_API_PROXY_CONFIG": str(tmp_path / "other/config.toml"),
             "CODEX_API_PROXY_PID_FILE": str(tmp_path / "other/pid")}  # fmt: skip
    ours = cli("start", "--port", port, env=other)
    assert ours.returncode != 0 and ours.stdout == ""
    assert f"port {port} is in use: a codex-api-proxy" in ours.stderr and "already runs there" in ours.stderr
    again = cli("start", env=env)  # the same config: its own daemon, found through the pid file
    assert again.returncode != 0 and "already runs (pid" in again.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        foreign = cli("start", "--port", str(busy), env=other)
    assert foreign.returncode != 0
    assert foreign.stderr.strip() == (
        f"codex-api-proxy: error: port {busy} on 127.0.0.1 is in use by another program; "
        "choose another --port"
    )


def test_stale_pid_file_of_an_unrelated_process_is_left_alive(env: dict[str, str], tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        state(tmp_path).mkdir(parents=True)
        (state(tmp_path) / "codex-api-proxy.pid").write_text(f"{sleeper.pid}\n")
        stopped = cli("stop", env=env)
        assert stopped.returncode == 0 and "not running" in stopped.stdout
        assert "stale pid file" in stopped.stderr and f"pid {sleeper.pid} left alone" in stopped.stderr
        assert sleeper.poll() is None
        assert not (state(tmp_path) / "codex-api-proxy.pid").exists()
        (state(tmp_path) / "codex-api-proxy.pid").write_text(f"{sleeper.pid}\n")
        started = cli("start", "--port", str(free_port()), env=env)
        assert started.returncode == 0, started.stderr
        assert "stale pid file" in started.stderr and sleeper.poll() is None
        assert daemon_pid(tmp_path) != sleeper.pid
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--heartbeat", "0"], "--heartbeat"),
        (["--model-map", "garbage"], "--model-map"),
        (["--port", "99999"], "--port"),
        (["--proxy", "notaurl"], "--proxy"),
        (["--upstream-url", "ftp://x"], "--upstream-url"),
        (["--log-format", "xml"], "--log-format"),
        (["--idle-timeout", "-1"], "--idle-timeout"),
        (["--no-such-thing"], "--no-such-thing"),
    ],
)
def test_bad_option_value_is_one_line_before_anything_starts(
    env: dict[str, str], tmp_path: Path, args: list[str], named: str
) -> None:
    t0 = time.monotonic()
    r = cli("start", *args, env=env)
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("codex-api-proxy: error: ") and named in line
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not state(tmp_path).exists()  # nothing started, nothing saved
    assert time.monotonic() - t0 < 60


def test_bad_value_in_the_config_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    state(tmp_path).mkdir(parents=True)
    (state(tmp_path) / "config.toml").write_text("heartbeat = 0\n")
    r = cli("start", env=env)
    assert r.returncode != 0
    (line,) = r.stderr.strip().splitlines()
    assert "heartbeat" in line and "config" in line


def test_missing_login_refuses_unless_allowed(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "home/.codex/auth.json").unlink()
    port = str(free_port())
    r = cli("start", "--port", port, env=env)
    assert r.returncode != 0
    (line,) = r.stderr.strip().splitlines()
    assert "auth.json" in line and "codex login" in line and "--allow-no-login" in line
    assert not (state(tmp_path) / "codex-api-proxy.pid").exists()
    allowed = cli("start", "--port", port, "--allow-no-login", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert "warning" in allowed.stderr and "codex login" in allowed.stderr
    assert "clients get 401" in allowed.stderr  # what the proxy answers without a login
    assert "mode: no login" in cli("status", env=env).stdout


def test_doctor_finds_the_daemon_through_the_config(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    assert cli("start", "--port", str(port), env=env).returncode == 0
    r = cli("doctor", env=env)
    assert r.returncode == 0, r.stdout
    assert f"answering on http://127.0.0.1:{port} (pid {daemon_pid(tmp_path)})" in r.stdout
    assert "chatgpt mode" in r.stdout and "access-token-1" not in r.stdout
    assert f'"ANTHROPIC_BASE_URL": "http://127.0.0.1:{port}"' in r.stdout
    assert f'base_url = "http://127.0.0.1:{port}/v1"' in r.stdout and 'wire_api = "responses"' in r.stdout
    # Claude Code's window settings for the configured map, from the daemon's catalog (issue 15)
    catalog = httpx.get(f"http://127.0.0.1:{port}/v1/models", trust_env=False, timeout=30).json()["data"]
    expected = claude_code_settings({}, catalog)
    assert expected and "CLAUDE_CODE_AUTO_COMPACT_WINDOW" in expected
    for name, value in expected.items():
        assert f'"{name}": "{value}"' in r.stdout, (name, r.stdout)
    cli("stop", env=env)
    write_auth(tmp_path / "home/.codex", access_token=make_jwt({"exp": time.time() - 60}))
    assert "access token expired (refreshed on use)" in cli("doctor", env=env).stdout
    (tmp_path / "home/.codex/auth.json").unlink()
    r = cli("doctor", env={**env, "HTTPS_PROXY": "http://user:secret@127.0.0.1:3128"})
    assert r.returncode == 1
    assert "codex login" in r.stdout and f"127.0.0.1:{port} is free" in r.stdout
    assert "HTTPS_PROXY=http://127.0.0.1:3128" in r.stdout and "secret" not in r.stdout


def test_logs_shows_the_daemon_log(env: dict[str, str]) -> None:
    port = free_port()
    assert cli("start", "--port", str(port), env=env).returncode == 0
    r = cli("logs", "-n", "20", env=env)
    assert r.returncode == 0 and "listening on http://127.0.0.1:" in r.stdout
    follow = subprocess.Popen([sys.executable, "-m", "codex_api_proxy", "logs", "-f"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/no-such-route", trust_env=False)  # a line after the tail
        assert r.status_code == 404
        seen = [follow.stdout.readline() for _ in range(2)]  # the tail: ready, listening
        assert any("listening on" in line for line in seen), seen
        assert follow.poll() is None  # still following
    finally:
        follow.terminate()
        follow.wait(10)


def test_mitmdump_runs_the_shipped_script(env: dict[str, str], fake: FakeBackend, tmp_path: Path) -> None:
    script = cli("addon-path", env=env).stdout.strip()
    assert Path(script).is_file() and Path(script).parent == ROOT / "codex_api_proxy" / "proxy"
    port = free_port()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    for script_path in (script, str(ROOT / "addons/codex_api_proxy.py")):  # the package's, and the shim
        args = [str(mitmdump), "-q", "-s", script_path, "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{port}",
                "--set", "connection_strategy=lazy", "--set", f"confdir={tmp_path / 'mitm'}"]  # fmt: skip
        proc = subprocess.Popen(args, env={**env, "CODEX_HOME": str(tmp_path / "home/.codex")},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            for _ in range(400):
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
        said = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        assert "Traceback" not in said and "ERROR" not in said and "error" not in said.lower(), said


def test_precedence_flag_env_file_default(env: dict[str, str], tmp_path: Path) -> None:
    def base_url(*args: str, **extra: str) -> str:
        out = cli("doctor", *args, env={**env, **extra}).stdout
        return out.split('"ANTHROPIC_BASE_URL": "')[1].split('"')[0]

    assert base_url() == "http://127.0.0.1:8765"  # default
    state(tmp_path).mkdir(parents=True)
    (state(tmp_path) / "config.toml").write_text("port = 8799\nhost = '127.0.0.2'\n")
    assert base_url() == "http://127.0.0.2:8799"  # file over default
    assert base_url(CODEX_API_PROXY_PORT="8800") == "http://127.0.0.2:8800"  # env over file
    (tmp_path / "old.toml").write_text("port = 8801\n")
    assert base_url("--state-file", str(tmp_path / "old.toml")) == "http://127.0.0.1:8801"  # 0.1.6's name
    port = free_port()
    r = cli("start", "--port", str(port), env={**env, "CODEX_API_PROXY_PORT": "8800"})  # flag over env
    assert r.returncode == 0, r.stderr
    assert f"running on http://127.0.0.2:{port}" in r.stdout


def test_two_starts_racing_for_one_port(env: dict[str, str], tmp_path: Path) -> None:
    """Both may pass the CLI's own port check: the loser still says the port is taken, never 'running'."""
    port = str(free_port())
    envs = [{**env, "CODEX_API_PROXY_CONFIG": str(tmp_path / f"d{i}/config.toml"),
             "CODEX_API_PROXY_PID_FILE": str(tmp_path / f"d{i}/pid"),
             "CODEX_API_PROXY_LOG_FILE": str(tmp_path / f"d{i}/log")} for i in (0, 1)]  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-m", "codex_api_proxy", "start", "--port", port], env=e, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for e in envs]  # fmt: skip
    try:
        results = [p.communicate(timeout=120) for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes[0] == 0 and codes[1] != 0, results
        loser = next(err for p, (_, err) in zip(procs, results, strict=True) if p.returncode)
        (line,) = loser.strip().splitlines()
        assert f"port {port} is in use: a codex-api-proxy" in line, line
    finally:
        for e in envs:
            cli("stop", env=e)


@pytest.mark.parametrize("command", ["start", "restart"])
def test_every_option_has_help_default_and_variable(command: str, env: dict[str, str]) -> None:
    text = " ".join(cli(command, "--help", env=env).stdout.split())
    for opt in (*OPTIONS, API_KEY_OPTION, CONFIG_OPTION):
        flag = opt.flags[0].split("/")[0]
        entry = (
            re.split(re.escape(flag) + "[ ,]", text, maxsplit=1)[1].split("[env var: ", 1)[1].split("]", 1)[0]
        )
        assert entry.startswith(opt.env), (flag, entry)
        assert opt.default is None or opt.default == "" or "default: " in entry, (flag, entry)
    for old_name in ("--log-format", "--models-cache-ttl", "--pid-file", "--log-file", "--state-file"):
        assert old_name in text  # the names 0.1.6 had


def no_trouble(log: str) -> None:
    """A log a person can read without alarm: no traceback, no ERROR line."""
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_two_configs_two_daemons_each_finds_its_own(env: dict[str, str], tmp_path: Path) -> None:
    a, b = ({**env, "CODEX_API_PROXY_CONFIG": str(tmp_path / f"{n}.toml")} for n in "ab")
    ports = {}
    try:
        for name, e in (("a", a), ("b", b)):
            ports[name] = free_port()
            r = cli("start", "--port", str(ports[name]), env=e)
            assert r.returncode == 0 and "stale" not in r.stderr and "removed" not in r.stderr, r.stderr
        pids = {n: int((tmp_path / f"{n}.pid").read_text()) for n in "ab"}
        assert pids["a"] != pids["b"] and all(is_ours(pid) for pid in pids.values())
        for name, e in (("a", a), ("b", b)):
            r = cli("status", env=e)
            assert r.returncode == 0 and r.stderr == "", r.stderr
            assert f"http://127.0.0.1:{ports[name]} (pid {pids[name]}," in r.stdout
        # a third config told to use a's pid file: refused, and the file stays with its live daemon
        c = {**env, "CODEX_API_PROXY_CONFIG": str(tmp_path / "c.toml"),
             "CODEX_API_PROXY_PID_FILE": str(tmp_path / "a.pid")}  # fmt: skip
        r = cli("start", "--port", str(free_port()), env=c)
        assert r.returncode != 0 and f"(pid {pids['a']})" in r.stderr and "another --config" in r.stderr
        assert "removed" not in r.stderr and int((tmp_path / "a.pid").read_text()) == pids["a"]
        assert cli("status", env=a).returncode == 0

        assert cli("restart", env=a).returncode == 0
        restarted = int((tmp_path / "a.pid").read_text())
        r = cli("stop", env=a)
        assert r.returncode == 0 and f"stopped (pid {restarted})" in r.stdout
        assert cli("status", env=a).returncode == 1
        assert cli("status", env=b).returncode == 0  # b is untouched
    finally:
        for e in (a, b):
            cli("stop", env=e)
    assert not (tmp_path / "a.pid").exists() and not (tmp_path / "b.pid").exists()
    for name in "ab":  # stop and restart ended each daemon quietly
        no_trouble((tmp_path / f"{name}.log").read_text())


def test_any_address_status_and_unknown_variables(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**env, "CODEX_API_PROXY_API_KEY": "k-" + os.urandom(4).hex(), "CODEX_API_PROXY_PROXY": "notaurl"}
    r = cli("start", "--host", "0.0.0.0", "--port", str(port), env=env)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "CODEX_API_PROXY_PROXY" in line]
    assert len(warnings) == 1 and "CODEX_API_PROXY_HTTPS_PROXY" in warnings[0], r.stderr  # once, with a hint
    assert f"running on http://127.0.0.1:{port}" in r.stdout
    status = cli("status", env=env)
    assert f"running on http://127.0.0.1:{port}" in status.stdout and "0.0.0.0" not in status.stdout
    cli("stop", env=env)


def test_help_everywhere(env: dict[str, str], tmp_path: Path) -> None:
    bare = cli(env=env)
    assert bare.returncode == 0 and bare.stdout.startswith("Usage:") and bare.stderr == ""
    assert cli("-h", env=env).stdout == bare.stdout
    commands = (
        "start",
        "stop",
        "restart",
        "status",
        "logs",
        "doctor",
        "demo",
        "claude",
        "codex",
        "addon-path",
    )
    listing = " ".join(bare.stdout.split())
    from codex_api_proxy.cli.main import main

    for name in commands:
        summary = main.commands[name].get_short_help_str(limit=1000)
        assert " ".join(summary.split()) in listing and "..." not in summary, name  # whole, not cut
        r = cli(name, "-h", env=env)
        assert r.returncode == 0 and r.stdout.startswith("Usage:"), (name, r.stderr)
    state(tmp_path).mkdir(parents=True)
    (state(tmp_path) / "config.toml").write_text("port = 9123\nheartbeat = 2.5\n")
    shown = " ".join(cli("restart", "--help", env=env).stdout.split())
    assert "saved: 9123" in shown and "saved: 2.5" in shown  # what restart will really use
    assert "default: (8765)" not in shown


def test_a_key_file_others_can_read_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k-123456\n")
    key.chmod(0o644)
    r = cli("start", "--port", str(free_port()), "--api-key-file", str(key), env=env)
    assert r.returncode != 0
    (line,) = r.stderr.strip().splitlines()
    assert "0644" in line and str(key) in line and "chmod 600" in line, line
    assert not state(tmp_path).joinpath("codex-api-proxy.pid").exists()


def test_doctor_says_what_it_can_tell_about_the_access_token(env: dict[str, str], tmp_path: Path) -> None:
    def token_line(access_token: str) -> tuple[int, str]:
        write_auth(tmp_path / "home/.codex", access_token=access_token)
        r = cli("doctor", env=env)
        return r.returncode, next(x for x in r.stdout.splitlines() if " access token: " in x)

    code, line = token_line("made-up-token")
    assert code == 0 and line.startswith("warn") and "not a JWT" in line, line
    code, line = token_line(make_jwt({"exp": time.time() + 3600}))
    assert (
        code == 0 and line.startswith("ok") and ("valid for 59 min" in line or "valid for 60 min" in line)
    ), line
    assert "signature" in line and "no network call" in line
    code, line = token_line("aaa.!!!.ccc")
    assert code == 1 and line.startswith("FAIL") and "does not decode" in line, line


def test_texts_keep_v1_and_a_demo_is_not_a_daemon(proxy: Proxy, env: dict[str, str]) -> None:
    r = httpx.get(proxy.v1 + "/chat/completions", trust_env=False, timeout=30)
    assert (
        r.status_code == 405 and r.json()["error"]["message"] == "GET is not allowed on /v1/chat/completions"
    )
    httpx.get(proxy.v1 + "/models", trust_env=False, timeout=30)
    log = proxy.log()
    assert "GET /v1/chat/completions" in log and "model=->" not in log
    busy = cli("demo", "--port", proxy.url.rsplit(":", 1)[1], env=env)
    assert busy.returncode != 0 and "already runs there" in busy.stderr
    assert "status" not in busy.stderr  # `status` cannot see a demo
