"""The commands that run and watch the background proxy: start, stop, restart, status and logs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..core.options import API_KEY_ENV, BY_NAME
from . import config as cfg
from .common import (
    SavedDefaults,
    check_bind,
    confdir_of,
    config_option,
    daemon_of,
    daemon_options,
    login_problem,
    report,
    resolve_api_key,
    settings_from,
)
from .daemon import hostport, port_problem
from .foreground import run_foreground


@click.command()
@daemon_options
@click.option("--foreground", is_flag=True, help="Run in this process until SIGINT/SIGTERM.")
@click.pass_context
def start(ctx: click.Context, foreground: bool, **kw: Any) -> None:
    """Start the proxy: a background daemon (unless --foreground) that is answering when this returns."""
    values, saved = settings_from(ctx, kw)
    api_key, key_source = resolve_api_key(kw, values, saved)
    check_bind(values["host"], api_key)
    if foreground:
        run_foreground(values, api_key)
    else:
        start_daemon(values, api_key, key_source)


def start_daemon(
    values: dict[str, Any], api_key: str | None, key_source: dict[str, Any], echo: Any = click.echo
) -> None:
    """Start the daemon and say where it runs (`echo`: stdout for `start`, stderr before a client)."""
    daemon = daemon_of(values)
    pid = daemon.running(report)
    if pid:
        raise click.ClickException(
            f"codex-api-proxy already runs (pid {pid}) on http://{hostport(daemon.host, daemon.port)}; "
            "use `codex-api-proxy restart` to change its settings"
        )
    stranger = daemon.live_stranger()
    if stranger:
        raise click.ClickException(
            f"the pid file {daemon.pid_file} belongs to a running codex-api-proxy (pid {stranger}) that does "
            f"not answer on {hostport(daemon.host, daemon.port)}; stop it, or start this one with another "
            "--config"
        )
    problem = port_problem(daemon.host, daemon.port)
    if problem:
        raise click.ClickException(problem)
    if values["web"] and port_problem("127.0.0.1", values["web_port"]):
        raise click.ClickException(f"--web-port {values['web_port']} is in use; choose another --web-port")
    no_login = login_problem(values)
    if no_login and not values["allow_no_login"]:
        raise click.ClickException(f"{no_login} To start anyway: --allow-no-login.")
    if no_login:
        click.echo(f"codex-api-proxy: warning: {no_login} Until then clients get 401.", err=True)
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    if api_key:
        env[API_KEY_ENV] = api_key
    if values["web"]:
        from .web import prepare_token

        token = prepare_token(confdir_of(values), values)
    offset = daemon.log_file.stat().st_size if daemon.log_file.exists() else 0
    args = ["start", "--foreground", "--config", values["config"], *cfg.command_line(values)]
    child = daemon.spawn(args, env)
    reason = daemon.wait_ready(child, offset)
    if reason:
        raise click.ClickException(reason)
    daemon.write_pid(child.pid)
    cfg.save(Path(values["config"]), {**{k: values[k] for k in BY_NAME}, **key_source})
    echo(
        f"codex-api-proxy {__version__} running on http://{hostport(daemon.host, daemon.port)} (pid {child.pid})"
    )
    if values["web"]:
        echo(f"traffic inspector (mitmweb): http://127.0.0.1:{values['web_port']}/?token={token}")
    echo(f"log: {daemon.log_file}  config: {values['config']}")


@click.command()
@config_option
@click.pass_context
def stop(ctx: click.Context, **kw: Any) -> None:
    """Stop the background proxy (only ever a codex-api-proxy process of yours)."""
    values, _ = settings_from(ctx, kw)
    daemon = daemon_of(values)
    pid = daemon.running(report)
    if pid is None:
        click.echo("codex-api-proxy is not running")
        return
    daemon.stop(pid)
    click.echo(f"codex-api-proxy stopped (pid {pid})")


@click.command(cls=SavedDefaults)
@daemon_options
@click.pass_context
def restart(ctx: click.Context, **kw: Any) -> None:
    """Stop the background proxy, then start it with the saved settings (and any given here)."""
    values, saved = settings_from(ctx, kw)
    api_key, key_source = resolve_api_key(kw, values, saved, restarting=True)
    check_bind(values["host"], api_key)
    old = daemon_of({**values, **{k: saved[k] for k in ("host", "port", "pid_file") if k in saved}})
    pid = old.running(report)
    if pid:
        old.stop(pid)
        click.echo(f"codex-api-proxy stopped (pid {pid})")
    start_daemon(values, api_key, key_source)


@click.command()
@config_option
@click.option("--verbose", "-v", is_flag=True, help="Also settings, files, login and counters per route.")
@click.pass_context
def status(ctx: click.Context, verbose: bool, **kw: Any) -> None:
    """Is the background proxy running and answering? Exit 1 when not."""
    from .status import describe

    values, saved = settings_from(ctx, kw)
    daemon = daemon_of(values)
    pid = daemon.running(report)
    if pid is None:
        click.echo(
            f"codex-api-proxy is not running (expected on http://{hostport(daemon.host, daemon.port)})"
        )
        sys.exit(1)
    key = os.environ.get(API_KEY_ENV) or None
    if values.get("api_key_file"):
        key = resolve_api_key({}, values, {})[0]
    for line in describe(daemon, pid, values, saved, key, verbose):
        click.echo(line)


@click.command()
@config_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "--lines", "-n", default=50, show_default=True, type=click.IntRange(min=0), help="Lines to show."
)
@click.pass_context
def logs(ctx: click.Context, follow: bool, lines: int, **kw: Any) -> None:
    """Show the daemon's log."""
    values, _ = settings_from(ctx, kw)
    path = Path(values["log_file"]).expanduser()
    if not path.exists():
        raise click.ClickException(f"no log yet at {path}")
    with open(path, errors="replace") as f:
        for line in f.readlines()[-lines:] if lines else []:
            click.echo(line, nl=False)
        while follow:
            line = f.readline()
            if line:
                click.echo(line, nl=False)
            else:
                time.sleep(0.2)
