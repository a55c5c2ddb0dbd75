"""The background daemon's lifecycle: a pid file that is only trusted when it is provably ours, a start
that waits for the truth, and a stop that never signals a stranger.

A pid file is trusted only when that pid is a codex-api-proxy process of this user (its command line)
that answers /health on the saved port (and holds that port's listening socket). It is removed only
when that process is gone (or the pid is now someone else's); a live codex-api-proxy that does not
answer on the port keeps its pid file. Each config has its own pid file (config.files_of). Processes
and sockets are read through psutil, so this holds on macOS as on Linux.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ERROR_PREFIX = "codex-api-proxy: error: "  # the daemon's one-line reason, found in its log by `start`
PORT_IN_USE = 3  # the daemon's exit status when its port is taken


def connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host.strip("[]")


def health(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """/health's JSON when a codex-api-proxy answers there, else None."""
    try:
        r = httpx.get(f"http://{hostport(host, port)}/health", timeout=timeout, trust_env=False)
        body = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) and "version" in body else None


def get_json(host: str, port: int, path: str, api_key: str | None = None, timeout: float = 2.0) -> Any:
    """A local endpoint's JSON (or /metrics/prometheus' text) when it answers 200, else None."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(
            f"http://{hostport(host, port)}{path}", headers=headers, timeout=timeout, trust_env=False
        )
        if r.status_code != 200:
            return None
        return r.text if path.endswith("/prometheus") else r.json()
    except (httpx.HTTPError, ValueError):
        return None


def hostport(host: str, port: int) -> str:
    """host:port to connect to a daemon bound to `host` (any-address binds reached on loopback)."""
    target = connect_host(host)
    return f"[{target}]:{port}" if ":" in target else f"{target}:{port}"


def port_problem(host: str, port: int, daemon_hint: bool = True) -> str | None:
    """Why the daemon could not listen on host:port, naming the port; None when it is free.
    `daemon_hint`: point at `status` (which sees daemons, not a `demo`) when a codex-api-proxy answers."""
    target = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            s.bind((target, port))
            return None
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"cannot listen on {host}:{port}: {exc.strerror}"
    info = health(host, port)
    if info is not None:
        where = "`codex-api-proxy status` shows it; stop it" if daemon_hint else "a daemon or a demo; stop it"
        return (
            f"port {port} is in use: a codex-api-proxy {info.get('version', '')} already runs there "
            f"({where} or choose another --port)"
        )
    return f"port {port} on {host} is in use by another program; choose another --port"


def is_ours(pid: int) -> bool:
    """A live codex-api-proxy process of this user (its command line names the package); a zombie or
    a process we may not read is not."""
    try:
        process = psutil.Process(pid)
        if process.uids().effective != os.getuid():
            return False
        args = " ".join(process.cmdline())
    except psutil.Error:
        return False
    return "codex_api_proxy" in args or "codex-api-proxy" in args


def listens_on(pid: int, port: int) -> bool:
    """Whether `pid` holds a listening TCP socket on `port`: a /health answer on the port could come
    from another proxy; this says the answer is this process's own."""
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == port for s in sockets)


@dataclass(frozen=True)
class Daemon:
    """One daemon as the config describes it: where it listens and where its files are."""

    pid_file: Path
    log_file: Path
    host: str
    port: int

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self, report: Callable[[str], None]) -> int | None:
        """The daemon's pid when the pid file is trustworthy; a stale one is reported and removed."""
        pid = self.read_pid()
        if pid is None:
            if self.pid_file.exists():
                report(f"removed an unreadable pid file {self.pid_file}")
                self.pid_file.unlink(missing_ok=True)
            return None
        if not is_ours(pid):
            why = "is not running" if not psutil.pid_exists(pid) else "is not a codex-api-proxy process"
            report(f"stale pid file {self.pid_file}: pid {pid} {why}; removed it (pid {pid} left alone)")
            self.pid_file.unlink(missing_ok=True)
            return None
        if health(self.host, self.port) is None or not listens_on(pid, self.port):
            report(
                f"pid file {self.pid_file} names pid {pid}, a codex-api-proxy that does not answer on "
                f"{hostport(self.host, self.port)}; both left alone (it may be starting, or use another port)"
            )
            return None
        return pid

    def live_stranger(self) -> int | None:
        """The pid in the pid file when that process is a live codex-api-proxy that `running` did not
        trust (not answering on this port): its pid file is not ours to take over."""
        pid = self.read_pid()
        return pid if pid is not None and is_ours(pid) else None

    def spawn(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.log_file, 0o600)
        with os.fdopen(fd, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "codex_api_proxy", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )

    def wait_ready(
        self, child: subprocess.Popen[bytes], log_offset: int, timeout: float = 90.0
    ) -> str | None:
        """None once /health answers on the port; else the daemon's one-line reason for exiting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                return self.reason(log_offset, child.returncode)
            if health(self.host, self.port, 0.5) is not None and listens_on(child.pid, self.port):
                return None
            time.sleep(0.1)
        child.terminate()
        return f"the daemon did not answer on {self.host}:{self.port} within {timeout:.0f} s (see {self.log_file})"

    def reason(self, log_offset: int, status: int) -> str:
        """The daemon's own one-line error from its log, else the last thing it wrote."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(log_offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            if line.startswith(ERROR_PREFIX):
                return line[len(ERROR_PREFIX) :]
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        return f"the daemon exited with status {status}: {last[:300]} (see {self.log_file})"

    def write_pid(self, pid: int) -> None:
        from .config import write_private

        write_private(self.pid_file, f"{pid}\n")

    def stop(self, pid: int) -> None:
        """SIGTERM, then SIGKILL after 15 s: each only while the pid is still our daemon."""
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            if not is_ours(pid):
                break
            os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and is_ours(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
