"""The usage page addon: `GET /dashboard` (a page for the person's browser), the figures behind it at
`GET /dashboard/data.json`, and the few the Claude Code status line prints at `GET /dashboard/status.json`.

The boundary has checked these routes before this addon sees them, as every route: the local key (or
the page's token derived from it), and no other web page (Origin, Sec-Fetch-Site). Aggregates are read
from the metrics registry, the very scrape `/metrics` answers; recent requests, conversations and
tokens per minute from its `UsageBook` (core/usage.py). The page loads nothing from anywhere else: its
Content-Security-Policy allows this origin only, and no frame may hold it.
"""

from __future__ import annotations

import time
from typing import Any

from mitmproxy import http

from .. import __version__
from ..core import routes
from ..core.models import map_model
from .dashboard_page import PAGE
from .runtime import Runtime, fail_closed, handled, json_response

NOTE = (
    "These figures live only in this proxy's memory: they start from nothing at each start and "
    "are never written to disk."
)
PAGE_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
}
PRIVATE = {"cache-control": "no-store", "referrer-policy": "no-referrer", "x-content-type-options": "nosniff"}
PERCENTILES = (0.5, 0.95)


def family_samples(found: dict[str, Any], family: str) -> list[dict[str, Any]]:
    return found.get(family, {}).get("samples", [])


def tokens_by_model(found: dict[str, Any]) -> dict[str, dict[str, int]]:
    """model -> input, cached_input, output, reasoning (the tokens counter's samples)."""
    out: dict[str, dict[str, int]] = {}
    for s in family_samples(found, "tokens"):
        if s["name"].endswith("_total"):
            kinds = out.setdefault(
                s["labels"]["model"] or "?",
                dict.fromkeys(("input", "cached_input", "output", "reasoning"), 0),
            )
            kinds[s["labels"]["kind"]] = int(s["value"])
    return out


def requests_by_kind(found: dict[str, Any]) -> list[dict[str, Any]]:
    """(API family, status class) -> requests, the local probes included."""
    counts: dict[tuple[str, str], int] = {}
    for s in family_samples(found, "requests"):
        if s["name"].endswith("_total"):
            key = (s["labels"]["family"], s["labels"]["status_class"])
            counts[key] = counts.get(key, 0) + int(s["value"])
    return [{"api": api, "status": status, "requests": n} for (api, status), n in sorted(counts.items())]


def totals(requests: list[dict[str, Any]]) -> dict[str, int]:
    """Client requests and errors: the proxy's own endpoints (this page's polls too) left out."""
    client = [r for r in requests if r["api"] != "local"]
    return {
        "requests_total": sum(r["requests"] for r in client),
        "requests_error": sum(r["requests"] for r in client if r["status"] not in ("1xx", "2xx", "3xx")),
    }


def latency(found: dict[str, Any], family: str) -> dict[str, dict[str, Any]]:
    """Per API family: count, mean and percentiles (the upper bound of the histogram bucket that holds
    them: the registry keeps buckets, not every duration), in milliseconds."""
    per: dict[str, dict[str, Any]] = {}
    for s in family_samples(found, family):
        entry = per.setdefault(s["labels"]["family"], {"buckets": []})
        if s["name"].endswith("_count"):
            entry["count"] = int(s["value"])
        elif s["name"].endswith("_sum"):
            entry["sum"] = s["value"]
        elif s["name"].endswith("_bucket"):
            entry["buckets"].append((float(s["labels"]["le"]), s["value"]))
    out: dict[str, dict[str, Any]] = {}
    for name, entry in sorted(per.items()):
        count = entry.get("count", 0)
        if not count:
            continue
        row: dict[str, Any] = {"count": count, "mean_ms": round(entry.get("sum", 0.0) / count * 1000, 1)}
        for p in PERCENTILES:
            bound = next((le for le, n in sorted(entry["buckets"]) if n >= p * count), float("inf"))
            row[f"p{round(p * 100)}_ms"] = round(bound * 1000, 1) if bound != float("inf") else None
        out[name] = row
    return out


class Dashboard:
    """Serves the usage page, its data and the status line's figures (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if handled(flow) or flow.request.method not in ("GET", "HEAD"):
            return
        route = routes.find(routes.route_path(flow.request.path))
        name = route.name if route is not None else ""
        if name == "dashboard":
            flow.response = http.Response.make(200, PAGE, {**PAGE_HEADERS, **PRIVATE})
        elif name == "dashboard_data":
            flow.response = json_response(200, self.data(), PRIVATE)
        elif name == "dashboard_status":
            query = flow.request.query
            flow.response = json_response(
                200, self.status(query.get("session", ""), query.get("model", "")), PRIVATE
            )
        if flow.response is not None and flow.request.method == "HEAD":
            flow.response.content = b""

    def quota(self) -> dict[str, Any] | None:
        return self.runtime.quota.as_json(self.runtime.credentials.account_id or "")

    def data(self) -> dict[str, Any]:
        rt, now = self.runtime, time.time()
        scrape = rt.metrics.json()
        found = scrape["metrics"]
        requests = requests_by_kind(found)
        return {
            "now": round(now, 3),
            "version": __version__,
            "note": NOTE,
            "uptime_seconds": scrape["uptime_seconds"],
            "quota": self.quota(),
            "totals": totals(requests),
            "streams_in_flight": scrape["streams_in_flight"],
            "tokens": tokens_by_model(found),
            "requests": requests,
            "errors_by_status": scrape["errors_by_status"],
            "upstream_errors": {
                s["labels"]["kind"]: int(s["value"])
                for s in family_samples(found, "upstream_errors")
                if s["name"].endswith("_total")
            },
            "latency": {
                "first_byte": latency(found, "time_to_first_byte_seconds"),
                "total": latency(found, "request_duration_seconds"),
            },
            **rt.metrics.usage.as_json(now),
        }

    def status(self, session: str, model: str) -> dict[str, Any]:
        """What `codex-api-proxy statusline` prints for one Claude Code session: the GPT model its
        Claude model goes to (the one last sent, else the one the model map names), the plan's windows
        and the conversation's cached share."""
        conv = self.runtime.metrics.usage.conversation(session) if session else None
        routed = (conv.model_sent if conv else "") or (
            map_model(model, self.runtime.settings.model_map) if model else ""
        )
        return {
            "version": __version__,
            "model": routed,
            "quota": self.quota(),
            "conversation": conv.as_json() if conv else None,
        }
