"""`codex-api-proxy status`: what a running daemon says about itself, and whose login it uses (masked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ..auth.authfile import jwt_claims
from ..auth.credentials import Credentials
from ..core.errors import ProxyError
from ..core.settings import default_auth_path
from .daemon import Daemon, get_json, health, hostport


def mask(value: str, keep: int = 4) -> str:
    """Enough to recognise an account, not enough to use it."""
    if "@" in value:
        name, _, domain = value.partition("@")
        return f"{name[:1]}***@{domain}"
    return value[:keep] + "…" + value[-2:] if len(value) > keep + 4 else "***"


def account(auth_file: str | None) -> str:
    path = Path(auth_file).expanduser() if auth_file else default_auth_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"no readable login at {path}"
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if isinstance(tokens, dict) and tokens.get("access_token"):
        email = jwt_claims(tokens.get("id_token")).get("email")
        who = mask(str(tokens.get("account_id") or "unknown"))
        return f"{who} ({mask(email)})" if isinstance(email, str) else who
    if isinstance(data, dict) and data.get("OPENAI_API_KEY"):
        return "OPENAI_API_KEY " + mask(str(data["OPENAI_API_KEY"]), 3)
    return f"no tokens in {path}"


def request_counts(metrics: str | None) -> dict[str, int]:
    """Client requests (all but the local probes) by `route status-class`, from /metrics/prometheus."""
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(metrics or ""):
        if family.name != "codex_api_proxy_requests":
            continue
        for sample in family.samples:
            route = sample.labels.get("route", "?")
            if not sample.name.endswith("_total") or sample.labels.get("family") == "local":
                continue  # probes and the proxy's own endpoints are not client requests
            key = f"{route} {sample.labels.get('status_class', '?')}"
            counts[key] = counts.get(key, 0) + int(sample.value)
    return counts


def quota_summary(quota: dict[str, Any]) -> str:
    """/health's quota as one line: `quota (plus): primary 12% of 300 min, resets in 60 min; ...`."""
    parts = []
    for name in ("primary", "secondary"):
        w = quota.get(name) or {}
        if w.get("used_percent") is None:
            continue
        part = f"{name} {w['used_percent']:g}%"
        if w.get("window_minutes") is not None:
            part += f" of {w['window_minutes']:g} min"
        if w.get("reset_after_seconds") is not None:
            part += f", resets in {w['reset_after_seconds'] / 60:.0f} min"
        parts.append(part)
    if quota.get("limit_reached"):
        after = quota.get("limit_reset_after_seconds")
        parts.append(
            "usage limit reached" + (f", resets in {after / 60:.0f} min" if after is not None else "")
        )
    plan = f" ({quota['plan_type']})" if quota.get("plan_type") else ""
    return f"quota{plan}: " + ("; ".join(parts) or "no figures yet")


def store_summary(store: dict[str, Any]) -> str:
    """/health's store figures as one line: what Responses clients may refer back to, and its bound."""
    mib = 1 << 20
    return (
        f"stored responses and items: {store.get('entries', 0)} entries, "
        f"{store.get('bytes', 0) / mib:.1f} of {store.get('max_bytes', 0) / mib:.0f} MiB"
        + (f" ({store['evicted']} evicted)" if store.get("evicted") else "")
    )


def _uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def local_login(auth_file: str | None) -> dict[str, Any]:
    """What /ready would say, read from the login file itself (when the daemon wants a key we lack)."""
    try:
        return Credentials(Path(auth_file).expanduser() if auth_file else None).describe()
    except ProxyError as error:
        return {"error": error.message}


def describe(
    daemon: Daemon,
    pid: int,
    values: dict[str, Any],
    saved: dict[str, Any],
    api_key: str | None,
    verbose: bool,
) -> list[str]:
    """/health (open), and /ready and /metrics when this shell has the daemon's local API key."""
    info = health(daemon.host, daemon.port) or {}
    ready = get_json(daemon.host, daemon.port, "/ready", api_key)
    if not isinstance(ready, dict):
        ready = {**local_login(values.get("auth_file")), "upstream": values.get("upstream_url")}
        if ready.get("mode") == "apikey":
            ready["upstream"] = values.get("openai_url")
    metrics = get_json(daemon.host, daemon.port, "/metrics/prometheus", api_key)
    counts = request_counts(metrics)
    requests = sum(counts.values()) if metrics else "? (needs the local API key)"
    lines = [
        f"codex-api-proxy {info.get('version', '?')} running on http://{hostport(daemon.host, daemon.port)} "
        f"(pid {pid}, up {_uptime(float(info.get('uptime_seconds', 0)))})",
        f"mode: {ready.get('mode') or 'no login: ' + str(ready.get('error', '?'))}"
        + (" (mitmweb)" if values.get("web") else ""),
        f"account: {account(values.get('auth_file'))}",
        f"upstream: {ready.get('upstream', values.get('upstream_url'))}",
        f"requests: {requests}",
    ]
    if values.get("web"):
        from .web import read_token

        confdir = Path(values["config"]).expanduser().parent / "mitmproxy"
        lines.append(f"inspector: http://127.0.0.1:{values['web_port']}/?token={read_token(confdir)}")
    quota = info.get("quota")
    if isinstance(quota, dict):
        lines.append(quota_summary(quota))
    store = info.get("store")
    if isinstance(store, dict):
        lines.append(store_summary(store))
    if verbose:
        expires = ready.get("expires_in")
        if expires is not None:
            lines.append(
                f"access token: {'expired' if expires < 0 else f'valid {expires // 60} min'} (refreshed on use)"
            )
        lines += [f"  {key}: {n}" for key, n in sorted(counts.items())]
        lines.append(f"config: {values['config']}")
        lines += [f"  {k} = {v!r}" for k, v in sorted(saved.items())]
        lines += [f"pid file: {daemon.pid_file}", f"log: {daemon.log_file}"]
    return lines
