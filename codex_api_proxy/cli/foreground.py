"""The proxy in this process (`start --foreground`, which the daemon is): its logging, the mitmproxy
master or mitmweb, and one `error:` line that `start` finds in the log when it fails."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

import click

from .. import __version__
from ..core.options import API_KEY_ENV
from . import config as cfg
from .common import confdir_of, login_problem
from .daemon import ERROR_PREFIX, PORT_IN_USE, listens_on, port_problem


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
