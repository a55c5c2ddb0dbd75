"""The other commands: doctor, demo, statusline, dashboard, the clients run through the proxy (claude,
codex) and addon-path. Each loads its module only when it runs."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..core.options import API_KEY_ENV, CONFIG_OPTION, DEMO_PORT_ENV, parse_model_map
from .common import check_bind, config_option, report, resolve_api_key, settings_from
from .daemon import hostport, port_problem
from .daemon_commands import start_daemon


@click.command()
@config_option
@click.pass_context
def doctor(ctx: click.Context, **kw: Any) -> None:
    """Check the daemon, the login, the port, the bind and proxies; print client settings. Exit 1 on a problem."""
    from .doctor import client_snippets, run_checks

    values, saved = settings_from(ctx, kw)
    ok = True
    for good, label, detail in run_checks(values, saved):
        click.echo(f"{'warn' if good is None else 'ok  ' if good else 'FAIL'} {label}: {detail}")
        ok = ok and good is not False
    click.echo("")
    click.echo(client_snippets(values, saved))
    sys.exit(0 if ok else 1)


@click.command()
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar=DEMO_PORT_ENV,
    show_envvar=True,
    help="Port to listen on (0: a free one).",
)
@click.option("--once", is_flag=True, help="Show one round trip per API and exit.")
def demo(port: int, once: bool) -> None:
    """Run the proxy against a built-in scripted model: no login needed, answers with text and tool calls."""
    from .demo import run_demo

    if port:
        problem = port_problem("127.0.0.1", port, daemon_hint=False)
        if problem:
            raise click.ClickException(problem)
    run_demo(port, once)


@click.command()
@config_option
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="The proxy's port (default: as `status`)."
)
@click.pass_context
def statusline(ctx: click.Context, port: int | None, **kw: Any) -> None:
    """One line for Claude Code's statusLine setting: routed model, plan usage, cached share. Exit 0 always."""
    from .statusline import local_key, status_line

    try:
        values, _ = settings_from(ctx, {**kw, **({"port": port} if port else {})})
        stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read(1 << 20)
        text = status_line(values["host"], int(values["port"]), stdin, local_key(values))
    except Exception as exc:  # Claude Code shows the line: one short reason, never a failure
        text = f"codex-api-proxy: {type(exc).__name__}: {str(exc)[:80]}"
    click.echo(text)


@click.command()
@config_option
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="The proxy's port (default: as `status`)."
)
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser too.")
@click.pass_context
def dashboard(ctx: click.Context, port: int | None, open_browser: bool, **kw: Any) -> None:
    """Print the URL of the running proxy's usage page (tokens, quota, conversations, latency)."""
    from .dashboard import dashboard_lines

    values, saved = settings_from(ctx, {**kw, **({"port": port} if port else {})})
    try:
        url, warnings = dashboard_lines(values, saved)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read --api-key-file: {exc}") from None
    for warning in warnings:
        report(f"warning: {warning}")
    click.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


CLIENT_COMMAND = {"context_settings": {"ignore_unknown_options": True, "allow_interspersed_args": False}}


def client_proxy(ctx: click.Context) -> tuple[str, str, str | None, dict[str, Any]]:
    """(base URL, host, local key, settings) of the proxy a client is to use: the one answering on the
    configured port (a daemon or a demo), else a daemon started here as `start` would (messages on
    stderr: stdout is the client's)."""
    from .daemon import health

    kw = {"config": os.environ.get(CONFIG_OPTION.env or "") or None}
    values, saved = settings_from(ctx, kw)
    key = os.environ.get(API_KEY_ENV) or None
    if values.get("api_key_file"):
        key = resolve_api_key({}, values, {})[0]
    base = f"http://{hostport(values['host'], values['port'])}"
    if health(values["host"], int(values["port"])) is None:
        check_bind(values["host"], key)
        key_source = {"api_key_env": API_KEY_ENV} if key and not values.get("api_key_file") else {}
        start_daemon(values, key, key_source, echo=lambda line: click.echo(line, err=True))
    elif key is None and (saved.get("api_key_env") or saved.get("api_key_from")):
        raise click.ClickException(f"the proxy on {base} wants its local API key: set ${API_KEY_ENV}")
    return base, values["host"], key, values


@click.command(**CLIENT_COMMAND, short_help="Run Claude Code through the proxy (started if need be).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def claude(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run Claude Code (`claude` on PATH, or $CODEX_API_PROXY_CLAUDE_BIN) with ARGS through the proxy:
    the daemon is started first unless one answers on the configured port. The proxy's address, key,
    the model map's context windows and the switches that keep Claude Code off Anthropic's hosts are
    set for this process only; nothing is written to your settings. Claude Code's own help:
    `codex-api-proxy claude -- --help`."""
    from . import clients
    from .doctor import context_settings

    binary = clients.CLAUDE.binary()
    base, host, key, values = client_proxy(ctx)
    env = clients.claude_env(os.environ, base, host, key, context_settings(values, key))
    clients.run(binary, args, env)


@click.command(**CLIENT_COMMAND, short_help="Run the Codex CLI through the proxy (started if need be).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def codex(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run the Codex CLI (`codex` on PATH, or $CODEX_API_PROXY_CODEX_BIN) with ARGS through the proxy:
    the daemon is started first unless one answers on the configured port. A model provider pointing
    at the proxy (and the model the map gives Claude's opus, unless you name one) is given with `-c`
    overrides for this run only; nothing is written to your config.toml. The Codex CLI's own help:
    `codex-api-proxy codex -- --help`."""
    from ..core.models import map_model
    from . import clients

    binary = clients.CODEX.binary()
    base, host, key, values = client_proxy(ctx)
    model = (
        None if clients.person_sets_model(args) else map_model("opus", parse_model_map(values["model_map"]))
    )
    overrides = clients.codex_overrides(base, key, model)
    clients.run(binary, [*overrides, *args], clients.codex_env(os.environ, host, key))


@click.command("addon-path")
def addon_path() -> None:
    """Print the path of the mitmproxy script (for `mitmdump -s` / `mitmweb -s`)."""
    from .. import mitm_addon_path

    click.echo(mitm_addon_path())
