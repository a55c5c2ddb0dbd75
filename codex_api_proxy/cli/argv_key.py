"""The local API key kept out of every argv: `--api-key KEY` given to `start` or `restart` moves into the
environment of a re-executed process before anything runs (argv is readable by every local user)."""

from __future__ import annotations

import os
import sys

from ..core.options import API_KEY_ENV, KEY_FROM_ARGV_ENV

API_KEY_FLAG = "--api-key"
KEY_COMMANDS = frozenset({"start", "restart"})  # the commands that take --api-key


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
    env = {**os.environ, API_KEY_ENV: key, KEY_FROM_ARGV_ENV: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *interpreter_args, *args], env)
