"""The quota addon: reads the plan's usage figures off upstream answers (core/quota.py keeps them) and
passes the latest ones to every client; the figures as gauges in /metrics."""

from __future__ import annotations

import time

from mitmproxy import http
from prometheus_client.core import GaugeMetricFamily

from ..core.headers import quota_fields
from ..core.metrics import PREFIX
from ..core.quota import MARKER, number
from .observe import relayed, upstream_error
from .runtime import Runtime


class Quota:
    """Reads the quota figures off upstream answers and passes the latest ones to every client."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        runtime.metrics.register(self.gauges)

    def account(self) -> str:
        return self.runtime.credentials.account_id or ""

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or not relayed(flow):
            return
        codex = quota_fields(response.headers.fields)
        if codex:
            self.runtime.quota.update(self.account(), codex, ok=response.status_code < 400)

    def response(self, flow: http.HTTPFlow) -> None:
        error = upstream_error(flow)
        if error is not None and error.code == "usage_limit_reached":
            self.runtime.quota.limit_reached(self.account(), error.retry_after)
        response = flow.response
        snap = self.runtime.quota.get(self.account())
        if response is None or snap is None or response.stream or MARKER in response.headers:
            return  # a stream's headers are gone already (and had the upstream's own)
        response.headers.fields += snap.header_fields(time.time())

    def gauges(self) -> list[GaugeMetricFamily]:
        """The current account's figures at scrape time (no account id: it is the login in use)."""
        snap = self.runtime.quota.get(self.account())
        if snap is None:
            return []
        now = time.time()
        used = GaugeMetricFamily(
            PREFIX + "quota_used_percent", "Share of the plan's window used.", labels=["window"]
        )
        minutes = GaugeMetricFamily(
            PREFIX + "quota_window_minutes", "Length of the plan's usage window.", labels=["window"]
        )
        after = GaugeMetricFamily(
            PREFIX + "quota_reset_after_seconds", "Seconds until the window resets.", labels=["window"]
        )
        for name, w in snap.windows.items():
            if w.used_percent is not None:
                used.add_metric([name], w.used_percent)
            if w.window_minutes is not None:
                minutes.add_metric([name], w.window_minutes)
            if w.resets_at is not None:
                after.add_metric([name], max(0.0, w.resets_at - now))
        info = GaugeMetricFamily(
            PREFIX + "quota_info", "The plan as the backend names it (value always 1).", labels=["plan_type"]
        )
        info.add_metric([snap.plan_type or ""], 1)
        reached = GaugeMetricFamily(
            PREFIX + "quota_limit_reached", "1 after a 429 usage_limit_reached, until an answer succeeds."
        )
        reached.add_metric([], 1 if snap.limit_reached else 0)
        updated = GaugeMetricFamily(
            PREFIX + "quota_updated_timestamp_seconds", "When the figures were last read (unix time)."
        )
        updated.add_metric([], snap.updated_at)
        families = [used, minutes, after, info, reached, updated]
        balance = number(snap.credits.get("balance"))
        if balance is not None:
            credits = GaugeMetricFamily(PREFIX + "quota_credits_balance", "Credits left on the account.")
            credits.add_metric([], balance)
            families.append(credits)
        return families
