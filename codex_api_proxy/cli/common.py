"""What the commands share: the group's one-line errors, the option decorators made from the option
table, settings resolved from flags, variables and the config file, the local key, the bind check, the
login check and the warning for a misspelt CODEX_API_PROXY_* variable."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from ..core.options import (
    API_KEY_ENV,
    API_KEY_OPTION,
    CONFIG_OPTION,
    DEBUG_ENV,
    ENV,
    KEY_FROM_ARGV_ENV,
    KNOWN_VARIABLES,
    OPTIONS,
)
from ..core.settings import is_loopback, read_api_key
from . import config as cfg
from .argv_key import move_api_key_out_of_argv
from .daemon import ERROR_PREFIX, Daemon


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
            if os.environ.get(DEBUG_ENV):
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
        moved = os.environ.pop(KEY_FROM_ARGV_ENV, None) is not None  # given as --api-key: saved as such
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


def warn_unknown_variables() -> None:
    """A misspelt CODEX_API_PROXY_* variable would be ignored silently: name it, and the closest one."""
    import difflib

    by_option = {o.name: o.env for o in (*OPTIONS, CONFIG_OPTION, API_KEY_OPTION) if o.env}
    for name in sorted(n for n in os.environ if n.startswith(ENV) and n not in KNOWN_VARIABLES):
        named = by_option.get(name.removeprefix(ENV).lower())  # the option's name, its variable not
        close = [named] if named else difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        report(f"warning: ${name} is not a codex-api-proxy setting and is ignored{hint}")
