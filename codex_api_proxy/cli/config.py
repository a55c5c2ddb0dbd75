"""The option table (core/options.py) as click options, and the TOML config file `start` saves and the
others read.

Every option resolves in one order: command line > environment variable > config file > default, so
`restart`, `status` and `doctor` find the daemon exactly where the last `start` put it. The config never
holds the local API key itself: only the file it came from or the variable that held it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click
import tomli_w

from ..core.options import (
    ADDON_OPTIONS,
    BY_NAME,
    OPTIONS,
    Choice,
    Option,
    default_state_dir,
)


class Checked(click.ParamType):
    """A check of the option table (core/options.py) as a click type."""

    def __init__(self, option: Option) -> None:
        self.check = option.check
        self.name = option.check.name

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.check(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def click_type(opt: Option) -> click.ParamType | None:
    if opt.is_flag:
        return None
    if isinstance(opt.check, Choice):
        return click.Choice(opt.check.choices)  # lists the choices in --help
    return Checked(opt)


def click_option(opt: Option) -> Any:
    default = opt.default_value()
    return click.option(
        *opt.flags,
        opt.name,
        type=click_type(opt),
        default=None,  # None = not given: the config file and the default come after
        envvar=opt.env,
        show_envvar=bool(opt.env),
        show_default=str(default) if default not in (None, "") else False,
        help=opt.help,
    )


def config_path(given: str | None) -> Path:
    return Path(given).expanduser() if given else default_state_dir() / "config.toml"


def files_of(config: Path) -> dict[str, str]:
    """The pid file and log beside a config (`config.toml` -> codex-api-proxy.pid/.log, `b.toml` ->
    b.pid/.log): each config's daemon has its own, so two daemons with two configs never share one."""
    stem = "codex-api-proxy" if config.stem == "config" else config.stem
    return {
        "pid_file": str(config.with_name(stem + ".pid")),
        "log_file": str(config.with_name(stem + ".log")),
    }


def private_dir(path: Path) -> None:
    """A 0700 folder for the config, pid, log and state files (they say where the login is)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically in a 0700 folder."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """The saved config; a missing file is an empty one, a broken one a clear error."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"cannot read the config {path}: {exc}") from None
    unknown = sorted(set(data) - set(BY_NAME) - {"api_key_env", "api_key_from"})
    if unknown:
        raise click.ClickException(f"{path}: unknown setting {unknown[0]!r}")
    return data


def save(path: Path, values: dict[str, Any]) -> None:
    write_private(path, tomli_w.dumps({k: v for k, v in values.items() if v is not None}))


def resolve(ctx: click.Context, given: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """flag > env > config file > default, for every option in OPTIONS. A command that declares the
    option gets flag and env through click; the others (status, stop, doctor) read the env here."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        from_env = os.environ.get(opt.env or "", "").strip() if opt.name not in given else ""
        if given.get(opt.name) is not None:
            value = given[opt.name]
        elif from_env:
            value = _check(opt, from_env, ctx, f"${opt.env}")
        elif opt.name in saved:
            value = _check(opt, saved[opt.name], ctx, f"config setting {opt.name}")
        else:
            value = opt.default_value()
        values[opt.name] = value
    return values


def _check(opt: Option, value: Any, ctx: click.Context, where: str) -> Any:
    """A value from the file or the env goes through the same validation as one from the command line."""
    param = click.Option([opt.flags[0]], type=click_type(opt))
    if opt.is_flag:
        value = value if isinstance(value, bool) else str(value)
    try:
        return param.type.convert(value, param, ctx)
    except click.BadParameter as exc:
        raise click.ClickException(f"{where}: {exc.format_message()}") from None


def addon_options(values: dict[str, Any]) -> dict[str, Any]:
    """The codex_* mitmproxy options for these values, every one of them: the addon's own default
    reads the environment, which these values have already had their say over."""
    return {
        o.addon: bool(values.get(o.name)) if o.is_flag else o.as_text(values.get(o.name))
        for o in ADDON_OPTIONS
    }


def command_line(values: dict[str, Any]) -> list[str]:
    """These values as flags for the daemon's own `start --foreground` (never a key)."""
    args: list[str] = []
    for opt in OPTIONS:
        value = values.get(opt.name)
        if value is None or value == "":
            continue
        if opt.is_flag:
            on, off = opt.flags[0].split("/")
            args.append(on if value else off)
        else:
            args += [opt.flags[0], str(value)]
    return args
