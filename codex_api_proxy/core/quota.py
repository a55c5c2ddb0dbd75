"""The plan's usage limits as the Codex backend reports them, kept per account and passed on.

The backend sends the account's rate-limit windows on its answers (`x-codex-primary-used-percent`,
`-window-minutes`, `-reset-after-seconds` / `-reset-at`, the `secondary` window likewise, `x-codex-plan-type`,
`x-codex-credits-*`); a 429 `usage_limit_reached` says the limit is hit. The latest figures of each
account are kept in a `QuotaBook`, shown in `/health` (what `codex-api-proxy status` prints) and as
gauges in `/metrics` for the current account, and sent to clients on every answer (the Codex CLI reads
them), also on answers the gateway rebuilt or that never reached the upstream.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WINDOWS = ("primary", "secondary")
CREDITS = ("has-credits", "unlimited", "balance")
MARKER = "x-codex-primary-used-percent"  # an answer with this one carries the figures already
MAX_ACCOUNTS = 16


def number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class Window:
    used_percent: float | None = None
    window_minutes: float | None = None
    resets_at: float | None = None  # unix seconds

    def as_json(self, now: float) -> dict[str, Any]:
        after = max(0, round(self.resets_at - now)) if self.resets_at is not None else None
        return {
            "used_percent": self.used_percent,
            "window_minutes": self.window_minutes,
            "reset_after_seconds": after,
            "resets_at": round(self.resets_at) if self.resets_at is not None else None,
        }


@dataclass
class Snapshot:
    """One account's latest figures."""

    windows: dict[str, Window] = field(default_factory=lambda: {w: Window() for w in WINDOWS})
    plan_type: str | None = None
    credits: dict[str, str] = field(default_factory=dict)
    limit_reached: bool = False
    limit_resets_at: float | None = None  # from the 429's resets_in_seconds / resets_at
    updated_at: float = 0.0
    version: int = 0  # bumped by every change, so rendered headers can be reused until then
    _rendered: tuple[tuple[int, int], tuple[tuple[bytes, bytes], ...]] = field(
        default=((-1, 0), ()), repr=False
    )

    def update(self, headers: Mapping[str, str], ok: bool, now: float) -> bool:
        """Take the figures `headers` (lower-case names) carry; False when they carry none."""
        seen = False
        for name, window in self.windows.items():
            used = number(headers.get(f"x-codex-{name}-used-percent"))
            minutes = number(headers.get(f"x-codex-{name}-window-minutes"))
            after = number(headers.get(f"x-codex-{name}-reset-after-seconds"))
            at = number(headers.get(f"x-codex-{name}-reset-at"))
            if used is not None:
                window.used_percent = used
            if minutes is not None:
                window.window_minutes = minutes
            if at is not None or after is not None:
                window.resets_at = at if at is not None else now + (after or 0)
            seen = seen or any(v is not None for v in (used, minutes, after, at))
        plan = headers.get("x-codex-plan-type")
        if plan:
            self.plan_type = plan[:32]
        for name in CREDITS:
            value = headers.get(f"x-codex-credits-{name}")
            if value is not None:
                self.credits[name] = value[:32]
        seen = seen or bool(plan) or any(f"x-codex-credits-{n}" in headers for n in CREDITS)
        if seen:
            self.updated_at = now
            self.version += 1
            if ok:
                self.limit_reached, self.limit_resets_at = False, None
        return seen

    def as_json(self, now: float) -> dict[str, Any]:
        limit_after = max(0, round(self.limit_resets_at - now)) if self.limit_resets_at is not None else None
        return {
            **{name: w.as_json(now) for name, w in self.windows.items()},
            "plan_type": self.plan_type,
            "credits": dict(self.credits),
            "limit_reached": self.limit_reached,
            "limit_reset_after_seconds": limit_after,
            "updated_at": round(self.updated_at, 3),
        }

    def header_fields(self, now: float) -> tuple[tuple[bytes, bytes], ...]:
        """`headers()` as mitmproxy header fields, rendered once per change and second: they are
        added to every answer."""
        key = (self.version, int(now))
        if self._rendered[0] != key:
            fields = tuple((k.encode(), v.encode("latin-1")) for k, v in self.headers(now).items())
            self._rendered = (key, fields)
        return self._rendered[1]

    def headers(self, now: float) -> dict[str, str]:
        """The figures as the backend's own headers (both reset forms, counted from `now`)."""
        out: dict[str, str] = {}
        for name, w in self.windows.items():
            if w.used_percent is not None:
                out[f"x-codex-{name}-used-percent"] = f"{w.used_percent:g}"
            if w.window_minutes is not None:
                out[f"x-codex-{name}-window-minutes"] = f"{w.window_minutes:g}"
            if w.resets_at is not None:
                out[f"x-codex-{name}-reset-after-seconds"] = str(max(0, round(w.resets_at - now)))
                out[f"x-codex-{name}-reset-at"] = str(round(w.resets_at))
        if self.plan_type:
            out["x-codex-plan-type"] = self.plan_type
        out.update({f"x-codex-credits-{k}": v for k, v in self.credits.items()})
        return out


class QuotaBook:
    """The latest Snapshot per account (in memory only; account ids never leave it)."""

    def __init__(self) -> None:
        self.accounts: dict[str, Snapshot] = {}

    def get(self, account: str) -> Snapshot | None:
        return self.accounts.get(account)

    def update(self, account: str, headers: Mapping[str, str], ok: bool) -> None:
        snap = self.accounts.get(account) or Snapshot()
        if snap.update(headers, ok, time.time()):
            self._put(account, snap)

    def limit_reached(self, account: str, retry_after: int | None) -> None:
        snap = self.accounts.get(account) or Snapshot()
        now = time.time()
        snap.limit_reached = True
        snap.limit_resets_at = now + retry_after if retry_after is not None else None
        snap.updated_at = now
        snap.version += 1
        self._put(account, snap)

    def _put(self, account: str, snap: Snapshot) -> None:
        if account not in self.accounts and len(self.accounts) >= MAX_ACCOUNTS:
            del self.accounts[min(self.accounts, key=lambda a: self.accounts[a].updated_at)]
        self.accounts[account] = snap

    def as_json(self, account: str) -> dict[str, Any] | None:
        snap = self.accounts.get(account)
        return snap.as_json(time.time()) if snap else None
