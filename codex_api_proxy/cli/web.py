"""`start --web`: the same addon under mitmweb, to look at every translated request in a browser.

The UI listens on 127.0.0.1 only and needs mitmweb's token, kept in the 0600 `config.yaml` of the
daemon's own mitmproxy confdir (never on a command line). Streamed answers are stored (mitmweb's
`store_streamed_bodies`), so a Claude Code answer is visible too, as text in the SSE content view
(proxy/contentview.py); each flow shows the client's request and, in its comment, the translated one
(proxy/inspector.py).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from . import config as cfg

# mitmweb's default columns and the comment: each flow's label, client model -> upstream model
WEB_COLUMNS = ["tls", "icon", "path", "method", "status", "size", "time", "comment"]


def prepare_token(confdir: Path, values: dict[str, Any]) -> str:
    """mitmweb's UI token, made once per confdir, in its config.yaml with the codex_* options: mitmweb
    reads that file itself, and a float option cannot be given as `--set` (mitmproxy parses no floats)."""
    token = read_token(confdir) or secrets.token_hex(16)
    lines = [f"web_password: {token}", f"web_columns: {json.dumps(WEB_COLUMNS)}"]
    lines += [f"{name}: {json.dumps(value)}" for name, value in cfg.addon_options(values).items()]
    cfg.write_private(confdir / "config.yaml", "\n".join(lines) + "\n")
    return token


def read_token(confdir: Path) -> str | None:
    try:
        text = (confdir / "config.yaml").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "web_password" and value.strip():
            return value.strip()
    return None


def mitmweb_args(values: dict[str, Any], confdir: Path) -> list[str]:
    """mitmweb with the options `start` gives its lean master (master.mitm_options), plus the UI's."""
    from .. import mitm_addon_path
    from ..proxy.master import mitm_options

    args = ["-s", str(mitm_addon_path())]
    for name, value in mitm_options(values["host"], values["port"], confdir).items():
        if name == "mode":
            args += ["--mode", value[0]]
        else:
            args += ["--set", f"{name}={str(value).lower() if isinstance(value, bool) else value}"]
    args += [
        "--set", "store_streamed_bodies=true",
        "--set", "web_open_browser=false",
        "--set", "web_host=127.0.0.1",
        "--set", f"web_port={values['web_port']}",
        "--set", "termlog_verbosity=warn",  # the daemon's own log lines are already in its log
    ]  # fmt: skip
    return args


def run_web(values: dict[str, Any], confdir: Path) -> None:
    from mitmproxy.tools.main import mitmweb

    cfg.private_dir(confdir)
    prepare_token(confdir, values)
    mitmweb(mitmweb_args(values, confdir))
