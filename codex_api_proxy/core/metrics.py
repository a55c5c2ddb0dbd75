"""The proxy's metrics: one prometheus_client registry behind GET /metrics and /metrics/prometheus.

`/metrics/prometheus` is the text exposition (version 0.0.4); `/metrics` is the same scrape as JSON,
with the flat keys the earlier `codex-api-proxy` 0.1.6 answered (`requests_total`, `requests_ok`,
`errors_by_status`...), so scripts written for it keep working. Labels are route names, API families,
status classes, model names and outcomes: never a header, a body, a token or an account id. Label
values that come from clients (model names) are bounded, so a client cannot grow the registry without
limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .usage import RequestRecord, UsageBook

disable_created_metrics()  # no `_created` series: they double the exposition and nobody here reads them

PREFIX = "codex_api_proxy_"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MAX_MODELS = 64  # distinct model labels; more become "other"
MAX_KINDS = 32  # distinct upstream error kinds
TOKEN_KINDS = ("input", "cached_input", "output", "reasoning")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._:/@+-]{1,64}")


class BoundedLabel:
    """Admits at most `limit` distinct, plain label values; anything else is "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if not value:
            return ""
        if len(self.seen) >= self.limit or not _LABEL_VALUE.fullmatch(value):
            return "other"
        self.seen.add(value)
        return value


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "aborted"


class Metrics:
    """Every metric family of one proxy. Addons update them; collectors registered with `register`
    add figures read at scrape time (token refreshes, quota)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.registry = CollectorRegistry(auto_describe=False)
        self.usage = UsageBook()  # what counters cannot hold: recent requests, conversations, per minute
        r = self.registry
        self.model_label = BoundedLabel(MAX_MODELS)
        self.kind_label = BoundedLabel(MAX_KINDS)
        self.requests = Counter(
            PREFIX + "requests",
            "Requests answered, by route, API family, status class (aborted: the flow ended without "
            "a complete answer, e.g. the client went away) and the model the client asked for.",
            ["route", "family", "status_class", "model"],
            registry=r,
        )
        self.errors_by_status = Counter(
            PREFIX + "errors_by_status",
            "Answers with an HTTP error status, by status.",
            ["status"],
            registry=r,
        )
        self.upstream_errors = Counter(
            PREFIX + "upstream_errors",
            "Upstream failures (HTTP errors, failures inside a stream, transport), by kind.",
            ["kind"],
            registry=r,
        )
        self.models_cache_hits = Counter(
            PREFIX + "models_cache_hits", "Model listings served from cache.", registry=r
        )
        self.models_cache_misses = Counter(
            PREFIX + "models_cache_misses", "Model listings fetched from the upstream.", registry=r
        )
        self.streams_in_flight = Gauge(
            PREFIX + "streams_in_flight", "Streamed answers being relayed right now.", registry=r
        )
        self.tokens = Counter(
            PREFIX + "tokens",
            "Tokens the upstream reported, by model and kind (input includes cached_input, output "
            "includes reasoning).",
            ["model", "kind"],
            registry=r,
        )
        self.duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Time from the first byte of the request to the end of the answer.",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_byte = Histogram(
            PREFIX + "time_to_first_byte_seconds",
            "Time from the first byte of the request to the first body byte handed to the client.",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            PREFIX + "proxy_overhead_seconds",
            "Time spent in the proxy itself (routing, translation, queueing), without the upstream's wait.",
            ["family"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.register(
            lambda: [
                GaugeMetricFamily(
                    PREFIX + "uptime_seconds", "Seconds since the proxy started.", value=self.uptime()
                )
            ]
        )

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def register(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Add figures computed at scrape time (a callable returning metric families)."""
        self.registry.register(_Collector(collect))

    # -- updates ------------------------------------------------------------------------------------

    def count_request(
        self,
        route: str,
        family: str,
        status: int,
        model: str,
        seconds: float,
        first_byte: float,
        overhead: float,
    ) -> None:
        """One answered (or aborted) request; status 0 = no complete answer."""
        self.requests.labels(route, family, status_class(status), self.model_label(model)).inc()
        if status >= 400:
            self.errors_by_status.labels(str(status)).inc()
        self.duration.labels(family).observe(seconds)
        self.first_byte.labels(family).observe(first_byte)
        self.overhead.labels(family).observe(overhead)

    def upstream_error(self, kind: str) -> None:
        self.upstream_errors.labels(self.kind_label(kind)).inc()

    def models_cache(self, hit: bool) -> None:
        (self.models_cache_hits if hit else self.models_cache_misses).inc()

    def token_usage(self, model: str, usage: dict[str, int]) -> None:
        """`usage` as `translate.accumulate.usage_of` returns it."""
        label = self.model_label(model)
        for kind, key in zip(TOKEN_KINDS, ("input", "cached", "output", "reasoning"), strict=True):
            if usage.get(key):
                self.tokens.labels(label, kind).inc(usage[key])

    def record(self, rec: RequestRecord, cache_miss: str = "") -> None:
        """One finished request for the usage page and the status line (core/usage.py)."""
        self.usage.record(rec, self.model_label(rec.model), cache_miss)

    # -- rendering ----------------------------------------------------------------------------------

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def json(self) -> dict[str, Any]:
        """The same scrape as `text()`, as JSON: 0.1.6's flat keys, then every family's samples."""
        families = {m.name: m for m in self.registry.collect()}
        found: dict[str, Any] = {
            name[len(PREFIX) :]: {
                "type": m.type,
                "help": m.documentation,
                "samples": [
                    {"name": s.name[len(PREFIX) :], "labels": s.labels, "value": s.value} for s in m.samples
                ],
            }
            for name, m in families.items()
        }

        def total(family: str, keep: Callable[[dict[str, str]], bool] = lambda _: True) -> int:
            samples = found.get(family, {}).get("samples", [])
            return int(sum(s["value"] for s in samples if s["name"].endswith("_total") and keep(s["labels"])))

        errors = found.get("errors_by_status", {}).get("samples", [])
        return {
            "requests_total": total("requests"),
            "requests_ok": total("requests", lambda labels: labels["status_class"] in ("1xx", "2xx", "3xx")),
            "requests_error": total(
                "requests", lambda labels: labels["status_class"] not in ("1xx", "2xx", "3xx")
            ),
            "errors_by_status": {s["labels"]["status"]: int(s["value"]) for s in errors},
            "token_refresh_total": total("token_refresh", lambda labels: labels.get("outcome") == "ok"),
            "models_cache_hits": total("models_cache_hits"),
            "models_cache_misses": total("models_cache_misses"),
            "streams_in_flight": int(found["streams_in_flight"]["samples"][0]["value"]),
            "uptime_seconds": round(found["uptime_seconds"]["samples"][0]["value"], 3),
            "metrics": found,
        }


class _Collector:
    """A prometheus_client collector around a callable."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect
