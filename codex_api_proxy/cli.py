"""`codex-api-proxy`: start, stop, restart, status, doctor and demo.

Every option also reads a CODEX_API_PROXY_* variable. The local API key is never put in any argv:
the daemon child gets it through its environment, and `--api-key-file` reads it from a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import tomli_w

from . import __version__
from .settings import API_KEY_ENV, DEFAULT_HOST, DEFAULT_PORT, is_loopback, read_api_key

ENV = "CODEX_API_PROXY_"


@dataclass(frozen=True)
class Paths:
    """Where a daemon keeps its pid, log, state and mitmproxy's confdir."""

    root: Path

    @property
    def pid(self) -> Path:
        return self.root / "codex-api-proxy.pid"

    @property
    def log(self) -> Path:
        return self.root / "codex-api-proxy.log"

    @property
    def state(self) -> Path:
        return self.root / "state.toml"

    @property
    def confdir(self) -> Path:
        return self.root / "mitmproxy"


def server_options(f: Any) -> Any:
    """Options shared by start and restart (all with CODEX_API_PROXY_* variables)."""
    opts = [
        click.option(
            "--host", default=DEFAULT_HOST, show_default=True, envvar=ENV + "HOST", help="Address to bind."
        ),
        click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, envvar=ENV + "PORT"),
        click.option(
            "--api-key", envvar=API_KEY_ENV, help=f"Local key clients must send (prefer ${API_KEY_ENV})."
        ),
        click.option("--api-key-file", type=click.Path(dir_okay=False), envvar=ENV + "API_KEY_FILE"),
        click.option("--upstream-url", envvar=ENV + "UPSTREAM_URL", help="Codex backend base URL."),
        click.option("--openai-url", envvar=ENV + "OPENAI_URL", help="OpenAI API base URL (API-key mode)."),
        click.option(
            "--auth-file",
            type=click.Path(dir_okay=False),
            envvar=ENV + "AUTH_FILE",
            help="auth.json (default $CODEX_HOME/auth.json).",
        ),
        click.option("--proxy", envvar=ENV + "HTTPS_PROXY", help="Outbound proxy (default HTTPS_PROXY)."),
        click.option(
            "--heartbeat", type=float, envvar=ENV + "HEARTBEAT", help="Keep-alive interval, seconds."
        ),
        click.option("--idle-timeout", type=float, envvar=ENV + "IDLE_TIMEOUT"),
        click.option("--first-byte-timeout", type=float, envvar=ENV + "FIRST_BYTE_TIMEOUT"),
        click.option("--connect-timeout", type=float, envvar=ENV + "CONNECT_TIMEOUT"),
        click.option("--model-map", envvar=ENV + "MODEL_MAP", help="e.g. opus=gpt-5.5,haiku=gpt-5.4-mini"),
        click.option(
            "--expose-reasoning/--no-expose-reasoning", default=None, envvar=ENV + "EXPOSE_REASONING"
        ),
        click.option(
            "--log-level",
            default="info",
            show_default=True,
            envvar=ENV + "LOG_LEVEL",
            type=click.Choice(["debug", "info", "warning", "error"]),
        ),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False),
            envvar=ENV + "STATE_DIR",
            default=str(Path.home() / ".codex-api-proxy"),
            show_default=True,
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


_ADDON_OPTIONS = {
    "upstream_url": "codex_upstream_url",
    "openai_url": "codex_openai_url",
    "auth_file": "codex_auth_file",
    "proxy": "codex_outbound_proxy",
    "heartbeat": "codex_heartbeat",
    "idle_timeout": "codex_idle_timeout",
    "first_byte_timeout": "codex_first_byte_timeout",
    "connect_timeout": "codex_connect_timeout",
    "model_map": "codex_model_map",
    "expose_reasoning": "codex_expose_reasoning",
}


def resolve_api_key(api_key: str | None, api_key_file: str | None) -> str | None:
    if api_key_file:
        try:
            return read_api_key(api_key_file)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot read the API key file: {exc}") from None
    return api_key or None


def check_bind(host: str, api_key: str | None) -> None:
    if not is_loopback(host) and not api_key:
        click.echo(
            f"error: refusing to listen on {host} without an API key: anyone who can reach it could use your "
            f"login. Set {API_KEY_ENV} (or --api-key-file), or bind 127.0.0.1.",
            err=True,
        )
        sys.exit(2)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # mitmproxy's own event log (connections, flows) only at debug
    logging.getLogger("mitmproxy").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def run_foreground(
    host: str, port: int, api_key: str | None, state_dir: str, log_level: str, **kw: Any
) -> None:
    from .master import serve  # mitmproxy is imported only when a proxy really starts

    setup_logging(log_level)
    if api_key:
        os.environ[API_KEY_ENV] = api_key  # read by the addon; keeps it out of mitmproxy's options
    addon_options = {_ADDON_OPTIONS[k]: v for k, v in kw.items() if k in _ADDON_OPTIONS and v is not None}

    def ready(bound_port: int, runtime: Any) -> None:
        click.echo(f"codex-api-proxy {__version__} listening on http://{host}:{bound_port}", err=True)

    asyncio.run(serve(host, port, Paths(Path(state_dir)).confdir, addon_options, ready))


def health(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    target = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        r = httpx.get(f"http://{target}:{port}/health", timeout=timeout, trust_env=False)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def read_pid(paths: Paths) -> int | None:
    try:
        pid = int(paths.pid.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


@click.group()
@click.version_option(__version__)
def main() -> None:
    """A local bridge from OpenAI and Anthropic API clients to your Codex CLI login."""


@main.command()
@server_options
@click.option("--foreground", is_flag=True, help="Run in this process until SIGINT/SIGTERM.")
def start(foreground: bool, **kw: Any) -> None:
    """Start the proxy (a background daemon unless --foreground)."""
    kw["api_key"] = resolve_api_key(kw.pop("api_key"), kw.pop("api_key_file"))
    check_bind(kw["host"], kw["api_key"])
    if foreground:
        run_foreground(**kw)
        return
    start_daemon(kw)


def start_daemon(kw: dict[str, Any]) -> None:
    paths = Paths(Path(kw["state_dir"]))
    pid = read_pid(paths)
    if pid:
        click.echo(f"codex-api-proxy is already running (pid {pid}); use restart to change settings")
        return
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    args = [sys.executable, "-m", "codex_api_proxy.cli", "start", "--foreground"]
    for name, value in kw.items():
        if name == "api_key" or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            args += [flag, str(value)]
    env = {**os.environ}
    env.pop(API_KEY_ENV, None)
    if kw["api_key"]:
        env[API_KEY_ENV] = kw["api_key"]
    with open(paths.log, "ab") as logfile:
        child = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise click.ClickException(f"the proxy exited with status {child.returncode}; see {paths.log}")
        if health(kw["host"], kw["port"], 0.5):
            break
        time.sleep(0.1)
    else:
        child.terminate()
        raise click.ClickException(f"the proxy did not answer /health within 15 s; see {paths.log}")
    paths.pid.write_text(f"{child.pid}\n")
    state = {k: v for k, v in kw.items() if v is not None and k != "api_key"}
    state["api_key"] = "set" if kw["api_key"] else "none"
    paths.state.write_text(tomli_w.dumps(state))
    click.echo(
        f"codex-api-proxy started (pid {child.pid}) on http://{kw['host']}:{kw['port']}; log: {paths.log}"
    )


def stop_daemon(paths: Paths) -> bool:
    pid = read_pid(paths)
    if pid is None:
        paths.pid.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    for sig_after in (10.0, 5.0):
        deadline = time.monotonic() + sig_after
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                paths.pid.unlink(missing_ok=True)
                return True
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    paths.pid.unlink(missing_ok=True)
    return True


_state_dir = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    envvar=ENV + "STATE_DIR",
    default=str(Path.home() / ".codex-api-proxy"),
    show_default=True,
)


@main.command()
@_state_dir
def stop(state_dir: str) -> None:
    """Stop the background proxy."""
    stopped = stop_daemon(Paths(Path(state_dir)))
    click.echo("codex-api-proxy stopped" if stopped else "codex-api-proxy is not running")


@main.command()
@server_options
def restart(**kw: Any) -> None:
    """Stop the background proxy, then start it with these settings."""
    kw["api_key"] = resolve_api_key(kw.pop("api_key"), kw.pop("api_key_file"))
    check_bind(kw["host"], kw["api_key"])
    stop_daemon(Paths(Path(kw["state_dir"])))
    start_daemon(kw)


@main.command()
@_state_dir
def status(state_dir: str) -> None:
    """Is the background proxy running and answering? Exit 1 when not."""
    import tomllib

    paths = Paths(Path(state_dir))
    pid = read_pid(paths)
    if pid is None:
        click.echo("codex-api-proxy is not running")
        sys.exit(1)
    state = tomllib.loads(paths.state.read_text()) if paths.state.exists() else {}
    host, port = state.get("host", DEFAULT_HOST), int(state.get("port", DEFAULT_PORT))
    info = health(host, port)
    if info is None:
        click.echo(f"codex-api-proxy (pid {pid}) is not answering on http://{host}:{port}/health")
        sys.exit(1)
    click.echo(
        f"codex-api-proxy {info.get('version')} running (pid {pid}) on http://{host}:{port}, "
        f"up {info.get('uptime_seconds', 0):.0f} s"
    )
    if info.get("quota"):
        click.echo(quota_summary(info["quota"]))


def quota_summary(quota: dict[str, Any]) -> str:
    """/health's quota as one line: `quota (plus): primary 12% of 300 min, resets in 60 min; ...`."""
    parts = []
    for name in ("primary", "secondary"):
        w = quota.get(name) or {}
        if w.get("used_percent") is None:
            continue
        part = f"{name} {w['used_percent']:g}%"
        if w.get("window_minutes") is not None:
            part += f" of {w['window_minutes']:g} min"
        if w.get("reset_after_seconds") is not None:
            part += f", resets in {w['reset_after_seconds'] / 60:.0f} min"
        parts.append(part)
    if quota.get("limit_reached"):
        after = quota.get("limit_reset_after_seconds")
        parts.append(
            "usage limit reached" + (f", resets in {after / 60:.0f} min" if after is not None else "")
        )
    plan = f" ({quota['plan_type']})" if quota.get("plan_type") else ""
    return f"quota{plan}: " + ("; ".join(parts) or "no figures yet")


@main.command()
@click.option("--host", default=DEFAULT_HOST, envvar=ENV + "HOST")
@click.option("--port", default=DEFAULT_PORT, type=int, envvar=ENV + "PORT")
@click.option("--auth-file", type=click.Path(dir_okay=False), envvar=ENV + "AUTH_FILE")
def doctor(host: str, port: int, auth_file: str | None) -> None:
    """Check the login, the port and a running proxy; exit 1 when something is wrong."""
    from .doctor import run_checks

    ok = True
    for good, label, detail in run_checks(host, port, Path(auth_file) if auth_file else None):
        click.echo(f"{'ok  ' if good else 'FAIL'} {label}: {detail}")
        ok = ok and good
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--port", default=0, type=int, help="Proxy port (default: a free one).")
@click.option("--once", is_flag=True, help="Show one round trip per API and exit.")
def demo(port: int, once: bool) -> None:
    """Run the proxy against a built-in fake Codex backend: no login needed."""
    from .demo import run_demo

    run_demo(port, once)


if __name__ == "__main__":
    main()
