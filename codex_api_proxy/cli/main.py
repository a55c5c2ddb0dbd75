"""`codex-api-proxy`: start, stop, restart, status, logs, doctor, demo, statusline, dashboard and
addon-path.

Every daemon option reads a CODEX_API_PROXY_* variable and the config file `start` saves
(flag > variable > file > default; the table is core/options.py, its resolution cli/config.py). The
local API key is never left in any argv: a `--api-key KEY` given to `start` or `restart` moves into the
environment of a re-executed process before anything runs, the daemon gets it through its environment,
and `--api-key-file` reads it from a file. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..core.conversations import MAX_BYTES_ENV as STORE_MAX_BYTES_ENV
from ..core.conversations import MAX_ENTRIES_ENV as STORE_MAX_ITEMS_ENV
from ..core.conversations import TTL_ENV as STORE_TTL_ENV
from ..core.options import (
    API_KEY_ENV,
    API_KEY_OPTION,
    BY_NAME,
    CONFIG_OPTION,
    ENV,
    OPTIONS,
    STATE_DIR_ENV,
    parse_model_map,
)
from ..core.settings import is_loopback, read_api_key
from . import config as cfg
from .daemon import ERROR_PREFIX, PORT_IN_USE, Daemon, hostport, listens_on, port_problem

API_KEY_FLAG = "--api-key"
KEY_COMMANDS = frozenset({"start", "restart"})  # the commands that take --api-key
KEY_MOVED_ENV = "CODEX_API_PROXY_KEY_FROM_ARGV"  # the re-executed process's key came as --api-key


def without_api_key(args: list[str]) -> tuple[list[str], str | None]:
    """(`args` without `--api-key KEY` / `--api-key=KEY`, the key) for `start` and `restart`; the key is
    None (and `args` as given) for other commands, after `--`, or when the flag has no value."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command not in KEY_COMMANDS:
        return args, None
    kept: list[str] = []
    key = None
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            kept += [arg, *rest]
        elif arg == API_KEY_FLAG:  # every one goes; the last one counts, as for click
            key = next(rest, None)
            if key is None:
                return args, None  # click reports the missing value
        elif arg.startswith(API_KEY_FLAG + "="):
            key = arg.partition("=")[2]
        else:
            kept.append(arg)
    return kept, key


def move_api_key_out_of_argv() -> None:
    """`--api-key KEY` would stay in /proc/PID/cmdline for as long as the process runs, readable by every
    local user with `ps`: execute this same program again, at once, with the key in its environment
    (readable by this user only) instead. The flag keeps working (0.1.6's users script it)."""
    args, key = without_api_key(sys.argv[1:])
    if key is None:
        return
    interpreter_args = sys.orig_argv[1 : len(sys.orig_argv) - len(sys.argv) + 1]  # `-m codex_api_proxy`
    env = {**os.environ, API_KEY_ENV: key, KEY_MOVED_ENV: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *interpreter_args, *args], env)


class OneLineErrors(click.Group):
    """Usage and option errors as one `codex-api-proxy: error: ...` line, not click's three; the
    command list with each summary whole (click cuts them at the terminal's width)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, cmd.get_short_help_str(limit=200)) for name, cmd in self.commands.items() if not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not args and kwargs.get("args") is None:  # the real command line, not a test's argument list
            move_api_key_out_of_argv()
        try:
            rv = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.ClickException as exc:
            click.echo(ERROR_PREFIX + exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.exit(130)
        except Exception as exc:  # a bug: one line here; CODEX_API_PROXY_DEBUG=1 shows the traceback
            if os.environ.get("CODEX_API_PROXY_DEBUG"):
                raise
            click.echo(f"{ERROR_PREFIX}internal error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class SavedDefaults(click.Command):
    """`restart --help`: each option shows the value restart will really use when it is not given,
    the one the last `start` saved, rather than the built-in default."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = cfg.config_path(config_from_argv() or os.environ.get(CONFIG_OPTION.env or "") or None)
        try:
            saved = cfg.load(path)
        except click.ClickException:
            saved = {}
        rows = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if param.name in saved:
                value = saved[param.name]
                shown = f"saved: {value}" if not isinstance(value, bool) else f"saved: {str(value).lower()}"
                replaced, found = re.subn(r"default: [^;\]]*", shown, text)
                text = replaced if found else f"{text}  [{shown}]"
            rows.append((name, text))
        if rows:
            with formatter.section(f"Options (saved values from {path})" if saved else "Options"):
                formatter.write_dl(rows)


def config_from_argv() -> str | None:
    """--config/--state-file from the command line, for help shown before click parsed it."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        for flag in ("--config", "--state-file"):
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def daemon_options(f: Any) -> Any:
    for opt in reversed((*OPTIONS, API_KEY_OPTION, CONFIG_OPTION)):
        f = cfg.click_option(opt)(f)
    return f


def config_option(f: Any) -> Any:
    return cfg.click_option(CONFIG_OPTION)(f)


def settings_from(ctx: click.Context, kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(resolved values, what the config file held) for a command's options."""
    path = cfg.config_path(kw.get("config"))
    saved = cfg.load(path)
    values = cfg.resolve(ctx, kw, {**cfg.files_of(path), **saved})
    values["config"] = str(path)
    return values, saved


def report(msg: str) -> None:
    click.echo(f"codex-api-proxy: {msg}", err=True)


def confdir_of(values: dict[str, Any]) -> Path:
    """mitmproxy's confdir beside the config: it writes a CA even in reverse mode; mitmweb's token."""
    return Path(values["config"]).expanduser().parent / "mitmproxy"


def daemon_of(values: dict[str, Any]) -> Daemon:
    return Daemon(Path(values["pid_file"]).expanduser(), Path(values["log_file"]).expanduser(),
                  values["host"], int(values["port"]))  # fmt: skip


def resolve_api_key(
    kw: dict[str, Any], values: dict[str, Any], saved: dict[str, Any], restarting: bool = False
) -> tuple[str | None, dict[str, Any]]:
    """The local key and how to find it again (saved instead of the key itself). A restart never
    quietly drops the key the daemon had; a new start without one only says so."""
    if values.get("api_key_file"):
        try:
            return read_api_key(values["api_key_file"]), {}
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot read --api-key-file: {exc}") from None
    source = click.get_current_context().get_parameter_source("api_key")
    if kw.get("api_key"):
        moved = os.environ.pop(KEY_MOVED_ENV, None) is not None  # given as --api-key: saved as such
        from_env = source == click.core.ParameterSource.ENVIRONMENT and not moved
        return kw["api_key"], {"api_key_env": API_KEY_ENV} if from_env else {"api_key_from": "command line"}
    if saved.get("api_key_env") or saved.get("api_key_from"):
        where = f"${saved['api_key_env']}" if saved.get("api_key_env") else "--api-key"
        message = f"the last start had a local API key from {where}, which is not saved"
        if restarting:
            raise click.ClickException(f"{message}; give it again (${API_KEY_ENV}) or use --api-key-file")
        report(f"warning: {message}; this one needs no key")
    return None, {}


def check_bind(host: str, api_key: str | None) -> None:
    if not is_loopback(host) and not api_key:
        raise click.UsageError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could use your login. "
            f"Set {API_KEY_ENV} (or --api-key-file), or bind 127.0.0.1."
        )


def login_problem(values: dict[str, Any]) -> str | None:
    from ..auth.credentials import Credentials
    from ..core.errors import ProxyError

    try:
        Credentials(Path(values["auth_file"]).expanduser() if values.get("auth_file") else None).describe()
    except ProxyError as error:
        return error.message
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` fields of a record become keys of their own."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage()}  # fmt: skip
        line.update({k: v for k, v in record.__dict__.items() if k not in self._STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # mitmweb sets the root logger to DEBUG when it starts: the level is held here too
    logging.getLogger("codex_api_proxy").setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "tornado"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # mitmproxy's own event log (connections, flows) only at debug
    logging.getLogger("mitmproxy").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def fail(message: str, status: int = 1) -> None:
    """The daemon's one-line reason: `start` finds this line in the log and shows it."""
    click.echo(ERROR_PREFIX + message, err=True)
    sys.exit(status)


def run_foreground(values: dict[str, Any], api_key: str | None) -> None:
    problem = port_problem(values["host"], values["port"])
    if problem:
        fail(problem, PORT_IN_USE)
    setup_logging(values["log_level"], values["log_format"])
    if api_key:
        os.environ[API_KEY_ENV] = api_key  # read by the addon; keeps it out of mitmproxy's options
    no_login = login_problem(values)
    if no_login:
        click.echo(f"codex-api-proxy: warning: {no_login}", err=True)
    confdir = confdir_of(values)
    from mitmproxy import exceptions

    try:
        if values["web"]:
            from .web import run_web

            run_web(values, confdir)
            return
        from ..proxy.master import serve  # mitmproxy is imported only when a proxy really starts

        def ready(bound_port: int, runtime: Any) -> None:
            click.echo(
                f"codex-api-proxy {__version__} listening on http://{values['host']}:{bound_port}", err=True
            )

        asyncio.run(serve(values["host"], values["port"], confdir, cfg.addon_options(values), ready))
    except exceptions.OptionsError as exc:
        fail(str(exc), 2)  # each names its option or variable
    except SystemExit as exc:  # mitmproxy's startup check: say it in our words when the port was taken
        # ...by another process: a failure after our own bind (any other startup error) is not the port's
        ours = listens_on(os.getpid(), int(values["port"]))
        problem = port_problem(values["host"], values["port"]) if exc.code and not ours else None
        if problem:
            fail(problem, PORT_IN_USE)
        raise
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the traceback goes to the log, the reason to `start`
        logging.getLogger("codex_api_proxy").exception("the proxy failed")
        fail(f"the proxy failed: {type(exc).__name__}: {exc}")


KNOWN_VARIABLES = frozenset(
    {o.env for o in (*OPTIONS, CONFIG_OPTION, API_KEY_OPTION) if o.env}
    | {STATE_DIR_ENV, "CODEX_API_PROXY_DEMO_PORT", "CODEX_API_PROXY_DEBUG", "CODEX_API_PROXY_CLAUDE_BIN",
       "CODEX_API_PROXY_CODEX_BIN", STORE_MAX_ITEMS_ENV, STORE_MAX_BYTES_ENV, STORE_TTL_ENV}
)  # fmt: skip


def warn_unknown_variables() -> None:
    """A misspelt CODEX_API_PROXY_* variable would be ignored silently: name it, and the closest one."""
    import difflib

    by_option = {o.name: o.env for o in (*OPTIONS, CONFIG_OPTION, API_KEY_OPTION) if o.env}
    for name in sorted(n for n in os.environ if n.startswith(ENV) and n not in KNOWN_VARIABLES):
        named = by_option.get(name.removeprefix(ENV).lower())  # the option's name, its variable not
        close = [named] if named else difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        report(f"warning: ${name} is not a codex-api-proxy setting and is ignored{hint}")


@click.group(
    cls=OneLineErrors,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__)
@click.pass_context
def main(ctx: click.Context) -> None:
    """A local bridge from OpenAI and Anthropic API clients to your Codex CLI login."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        return
    if not ctx.resilient_parsing:
        warn_unknown_variables()


@main.command()
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


@main.command()
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


@main.command(cls=SavedDefaults)
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


@main.command()
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


@main.command()
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


@main.command()
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


@main.command()
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="CODEX_API_PROXY_DEMO_PORT",
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


@main.command()
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


@main.command()
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


@main.command(**CLIENT_COMMAND, short_help="Run Claude Code through the proxy (started if need be).")
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


@main.command(**CLIENT_COMMAND, short_help="Run the Codex CLI through the proxy (started if need be).")
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


@main.command("addon-path")
def addon_path() -> None:
    """Print the path of the mitmproxy script (for `mitmdump -s` / `mitmweb -s`)."""
    from .. import mitm_addon_path

    click.echo(mitm_addon_path())


if __name__ == "__main__":
    main()
