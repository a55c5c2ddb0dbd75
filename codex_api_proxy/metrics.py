"""In-process counters rendered in the Prometheus text format for GET /metrics.

Only route names, statuses and outcomes are recorded: never a header, a body or a token.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    started: float = field(default_factory=time.monotonic)
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route, status)
    stream_failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, code)
    duration_sum: Counter[str] = field(default_factory=Counter)
    duration_count: Counter[str] = field(default_factory=Counter)
    models_cache: Counter[str] = field(default_factory=Counter)  # hit / miss

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[route, status] += 1
        self.duration_sum[route] += seconds
        self.duration_count[route] += 1

    def render(self, token_refreshes: int) -> str:
        durations = [
            (f'_sum{{route="{r}"}}', f"{self.duration_sum[r]:.6f}") for r in sorted(self.duration_count)
        ] + [(f'_count{{route="{r}"}}', str(self.duration_count[r])) for r in sorted(self.duration_count)]
        families = [
            ("requests_total", "counter", "Requests answered, by route and HTTP status.",
             [(f'{{route="{r}",status="{s}"}}', n) for (r, s), n in sorted(self.requests.items())]),
            ("stream_failures_total", "counter", "Streams that ended in an error event, by route and code.",
             [(f'{{route="{r}",code="{c}"}}', n) for (r, c), n in sorted(self.stream_failures.items())]),
            ("request_duration_seconds", "summary", "Time from request to the end of the answer.", durations),
            ("models_cache_total", "counter", "Model list lookups, by cache outcome.",
             [(f'{{outcome="{o}"}}', n) for o, n in sorted(self.models_cache.items())]),
            ("token_refresh_total", "counter", "Access-token refreshes done by this process.", [("", token_refreshes)]),
            ("uptime_seconds", "gauge", "Seconds since the proxy started.", [("", f"{self.uptime():.3f}")]),
        ]  # fmt: skip
        lines: list[str] = []
        for name, kind, help_text, samples in families:
            metric = f"codex_api_proxy_{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            lines += [f"{metric}{labels} {value}" for labels, value in samples]
        return "\n".join(lines) + "\n"
