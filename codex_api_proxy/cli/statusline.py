"""`codex-api-proxy statusline`: one line for Claude Code's `statusLine` setting.

Claude Code runs the command after each turn with a JSON object on stdin (`session_id`, `model.id`,
`workspace`, `cost`...) and shows what it prints. The line names the GPT model the session's Claude
model is routed to, the plan's 5-hour and weekly usage with the time to each reset, and the cached share
of the conversation's input tokens (Claude Code's session id is the proxy's conversation key: it sends
it as `x-claude-code-session-id`). One GET of `/dashboard/status.json` with a short timeout, no
mitmproxy import; whatever goes wrong, the line says so and the exit status is 0, so Claude Code is
never disturbed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from ..core.options import API_KEY_ENV
from ..core.settings import read_api_key
from .daemon import hostport

TIMEOUT = 0.8  # seconds: Claude Code waits for the line after every turn
CLIENT_KEYS = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY")  # what Claude Code itself sends the proxy


def claude_code_input(text: str) -> tuple[str, str]:
    """(session id, model id) from Claude Code's JSON; empty strings for what is missing or malformed."""
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    model = data.get("model")
    model_id = model.get("id") if isinstance(model, dict) else model
    session = data.get("session_id")
    return (session if isinstance(session, str) else ""), (model_id if isinstance(model_id, str) else "")


def local_key(values: dict[str, Any]) -> str | None:
    """The key the proxy wants, as the status line finds it: the proxy's own variable or key file, else
    the token Claude Code sends the proxy (its settings' env reaches the commands it runs)."""
    if os.environ.get(API_KEY_ENV):
        return os.environ[API_KEY_ENV]
    if values.get("api_key_file"):
        try:
            return read_api_key(values["api_key_file"])
        except (OSError, ValueError):
            pass
    return next((os.environ[name] for name in CLIENT_KEYS if os.environ.get(name)), None)


def window_name(minutes: float | None, fallback: str) -> str:
    if not minutes:
        return fallback
    if minutes % 10080 == 0:
        return "week" if minutes == 10080 else f"{minutes / 10080:g}w"
    if minutes % 1440 == 0:
        return f"{minutes / 1440:g}d"
    return f"{minutes / 60:g}h" if minutes >= 60 else f"{minutes:g}m"


def duration(seconds: float) -> str:
    minutes = int(seconds) // 60
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    return f"{days}d{hours}h" if days else f"{hours}h{mins:02d}m" if hours else f"{mins}m"


def line(status: dict[str, Any]) -> str:
    """`gpt-5.5 | 5h 12% (resets 1h00m) | week 34% (resets 3d0h) | cached 83%`."""
    parts = [str(status["model"])] if status.get("model") else []
    quota = status.get("quota") or {}
    for name, fallback in (("primary", "5h"), ("secondary", "week")):
        w = quota.get(name) or {}
        if w.get("used_percent") is None:
            continue
        text = f"{window_name(w.get('window_minutes'), fallback)} {w['used_percent']:g}%"
        if w.get("reset_after_seconds") is not None:
            text += f" (resets {duration(w['reset_after_seconds'])})"
        parts.append(text)
    if quota.get("limit_reached"):
        parts.append("LIMIT REACHED")
    if not quota:
        parts.append("quota: no figures yet")
    conv = status.get("conversation") or {}
    share = conv.get("cached_share")
    parts.append(f"cached {share:.0%}" if isinstance(share, (int, float)) else "cached -")
    return " | ".join(parts)


def status_line(host: str, port: int, stdin_text: str, key: str | None) -> str:
    """The line to print; never raises for anything the network or the proxy does."""
    where = hostport(host, port)
    session, model = claude_code_input(stdin_text)
    try:
        r = httpx.get(
            f"http://{where}/dashboard/status.json",
            params={"session": session, "model": model},
            headers={"authorization": f"Bearer {key}"} if key else {},
            timeout=TIMEOUT,
            trust_env=False,
        )
    except httpx.HTTPError:
        return f"codex-api-proxy: not running on {where}"
    if r.status_code == 401:
        return f"codex-api-proxy on {where}: needs the local API key (${API_KEY_ENV})"
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict):
        return f"codex-api-proxy on {where}: answered {r.status_code}"
    return line(body)
