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
        lines = [
            "# HELP codex_api_proxy_requests_total Requests answered, by route and HTTP status.",
            "# TYPE codex_api_proxy_requests_total counter",
        ]
        lines += [
            f'codex_api_proxy_requests_total{{route="{r}",status="{s}"}} {n}'
            for (r, s), n in sorted(self.requests.items())
        ]
        lines += [
            "# HELP codex_api_proxy_stream_failures_total Streams that ended in an error event, by route and code.",
            "# TYPE codex_api_proxy_stream_failures_total counter",
        ]
        lines += [
            f'codex_api_proxy_stream_failures_total{{route="{r}",code="{c}"}} {n}'
            for (r, c), n in sorted(self.stream_failures.items())
        ]
        lines += [
            "# HELP codex_api_proxy_request_duration_seconds Time from request to the end of the answer.",
            "# TYPE codex_api_proxy_request_duration_seconds summary",
        ]
        for route in sorted(self.duration_count):
            lines.append(
                f'codex_api_proxy_request_duration_seconds_sum{{route="{route}"}} {self.duration_sum[route]:.6f}'
            )
            lines.append(
                f'codex_api_proxy_request_duration_seconds_count{{route="{route}"}} {self.duration_count[route]}'
            )
        lines += [
            "# HELP codex_api_proxy_models_cache_total Model list lookups, by cache outcome.",
            "# TYPE codex_api_proxy_models_cache_total counter",
        ]
        lines += [
            f'codex_api_proxy_models_cache_total{{outcome="{o}"}} {n}'
            for o, n in sorted(self.models_cache.items())
        ]
        lines += [
            "# HELP codex_api_proxy_token_refresh_total Access-token refreshes done by this process.",
            "# TYPE codex_api_proxy_token_refresh_total counter",
            f"codex_api_proxy_token_refresh_total {token_refreshes}",
            "# HELP codex_api_proxy_uptime_seconds Seconds since the proxy started.",
            "# TYPE codex_api_proxy_uptime_seconds gauge",
            f"codex_api_proxy_uptime_seconds {self.uptime():.3f}",
        ]
        return "\n".join(lines) + "\n"
