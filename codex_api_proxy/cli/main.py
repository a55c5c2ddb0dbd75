"""`codex-api-proxy`: start, stop, restart, status, logs, doctor, demo, statusline, dashboard and
addon-path.

Every daemon option reads a CODEX_API_PROXY_* variable and the config file `start` saves
(flag > variable > file > default; the table is core/options.py, its resolution cli/config.py). The
local API key is never left in any argv: a `--api-key KEY` given to `start` or `restart` moves into the
environment of a re-executed process before anything runs, the daemon gets it through its environment,
and `--api-key-file` reads it from a file. Every error is one line on stderr, never a traceback.

This module is the group and the order `--help` lists the commands in; the daemon's commands are in
daemon_commands.py, the others in commands.py, and what they share (option decorators, settings, the
one-line errors, the unknown-variable warning) in common.py.
"""

from __future__ import annotations

import click

from .. import __version__
from .commands import addon_path, claude, codex, dashboard, demo, doctor, statusline
from .common import OneLineErrors, warn_unknown_variables
from .daemon_commands import logs, restart, start, status, stop


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


for command in (start, stop, restart, status, logs, doctor, demo, statusline, dashboard, claude, codex,
                addon_path):  # fmt: skip
    main.add_command(command)


if __name__ == "__main__":
    main()
