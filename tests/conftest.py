"""Test machinery: the fake Codex backend and the REAL proxy (`python -m codex_api_proxy start
--foreground`, mitmproxy and all) on free loopback ports, with a throwaway CODEX_HOME."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.auth.authfile import iso_time
from codex_api_proxy.core.options import ADDON_OPTIONS
from codex_api_proxy.testing.fake_backend import FakeBackend, make_jwt

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "acct-test-1"
ACCESS_TOKEN = "access-token-1"
REFRESH_TOKEN = "refresh-token-1"
# Variables a developer's shell may carry that would change what the proxy does.
_SCRUBBED = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
             "no_proxy", "OPENAI_API_KEY", "CODEX_API_PROXY_API_KEY")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_auth(
    codex_home: Path,
    *,
    access_token: str = ACCESS_TOKEN,
    api_key: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Path:
    """An auth.json shaped like the Codex CLI's, as it is just after `codex login`: every time in it is
    relative to `clock` (never a fixed date, which ages into a refresh and a rotated test token)."""
    codex_home.mkdir(parents=True, exist_ok=True)
    now = clock()
    id_token = make_jwt(
        {"https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT_ID}, "exp": now + 3600}
    )
    data = {
        "OPENAI_API_KEY": api_key,
        "tokens": {
            "id_token": id_token,
            "access_token": access_token,
            "refresh_token": REFRESH_TOKEN,
            "account_id": ACCOUNT_ID,
        },
        "last_refresh": iso_time(now),
    }
    path = codex_home / "auth.json"
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return path


@dataclass
class Proxy:
    """A running proxy process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    codex_home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# `start --foreground` flags as the mitmdump `--set` options they become (the same addon behind both)
MITMDUMP_OPTIONS = {o.flags[0]: o.addon for o in ADDON_OPTIONS}


RUNNER = {"default": "start"}  # test_mitmdump.py switches it, so the same tests start mitmdump instead


def proxy_command(port: int, tmp: Path, runner: str, log_level: str, extra_args: list[str]) -> list[str]:
    """How a person starts the proxy: `codex-api-proxy start --foreground`, or `mitmdump -s` on the
    addon script (the README's inspection recipe, without the UI)."""
    if runner == "start":
        return [sys.executable, "-m", "codex_api_proxy", "start", "--foreground", "--port", str(port),
                "--log-level", log_level, *extra_args]  # fmt: skip
    args = [str(Path(sys.executable).parent / "mitmdump"), "-q", "-s", str(ROOT / "addons/codex_api_proxy.py"),
            "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
            "--set", f"confdir={tmp / 'mitm'}"]  # fmt: skip
    flags = iter(extra_args)
    for flag in flags:
        args += ["--set", f"{MITMDUMP_OPTIONS[flag]}={next(flags)}"]
    return args


def start_proxy(tmp: Path, backend: FakeBackend, *, extra_args: list[str] | None = None,
                env: dict[str, str] | None = None, codex_home: Path | None = None,
                log_level: str = "debug", runner: str | None = None) -> Proxy:  # fmt: skip
    tmp.mkdir(parents=True, exist_ok=True)
    codex_home = codex_home or tmp / "codex-home"
    if not (codex_home / "auth.json").exists():
        write_auth(codex_home)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    full_env.update(
        CODEX_HOME=str(codex_home),
        CODEX_API_PROXY_UPSTREAM_URL=backend.url,
        CODEX_API_PROXY_OPENAI_URL=backend.base_url + "/v1",
        CODEX_REFRESH_TOKEN_URL_OVERRIDE=backend.token_url,
        CODEX_API_PROXY_STATE_DIR=str(tmp / "state"),
        HOME=str(tmp / "home"),
    )
    full_env.update(env or {})
    log_path = tmp / f"proxy-{port}.log"
    args = proxy_command(port, tmp, runner or RUNNER["default"], log_level, extra_args or [])
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, env=full_env, stdout=log, stderr=log, cwd=ROOT)
    proxy = Proxy(f"http://127.0.0.1:{port}", process, log_path, codex_home, full_env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"proxy exited with {process.returncode}:\n{proxy.log()}")
        try:
            if httpx.get(proxy.url + "/health", timeout=0.5, trust_env=False).status_code == 200:
                return proxy
        except httpx.HTTPError:
            time.sleep(0.05)
    proxy.stop()
    raise RuntimeError(f"proxy did not become healthy:\n{proxy.log()}")


@pytest.fixture(scope="session")
def backend() -> Iterator[FakeBackend]:
    with FakeBackend(
        access_tokens={ACCESS_TOKEN}, account_id=ACCOUNT_ID, refresh_tokens={REFRESH_TOKEN}
    ) as fb:
        yield fb


@pytest.fixture
def fake(backend: FakeBackend) -> FakeBackend:
    """The session's fake backend, with an empty script and no recorded requests."""
    backend.clear()
    return backend


@pytest.fixture(scope="session")
def proxy(backend: FakeBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """One proxy for the session, default settings except a short heartbeat."""
    p = start_proxy(tmp_path_factory.mktemp("proxy"), backend, extra_args=["--heartbeat", "0.3"])
    yield p
    p.stop()


@pytest.fixture
def http(proxy: Proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=30, trust_env=False) as client:
        yield client
