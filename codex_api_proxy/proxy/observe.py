"""Request ids and request metrics: two mitmproxy addons that watch every flow and change no answer.

`RequestIds` gives every request one id (the client's `x-request-id` / `x-correlation-id` /
`x-client-request-id`, else a new one): back to the client as `x-request-id` on every answer, and into
`flow.metadata["request_id"]` for the log line (upstream it goes as `x-client-request-id` only where the
request has no conversation, whose thread id that header carries as the Codex CLI sends it).

`RequestMetrics` counts every flow exactly once, in one place: its `response` and `error` hooks both end
in `count`, which marks the flow, so a flow that sees both is still one request. It runs after every
other addon, so it sees the final answer (local endpoints, the boundary's refusals, the gateway's
errors and the relay's translated answers) and times it: total latency, time to the first body byte, and the proxy's own share
(routing before the upstream call, translation of the answer, hooks after it; the upstream's wait is
left out).

Its labels come from the routes table (core/routes.py): a path not in it is route and family "other".
What only the relay knows (the upstream's failure, the token usage, when the first byte left, the time
spent translating) it leaves on the gateway's `FlowState`, which both read.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from mitmproxy import http
from prometheus_client.core import CounterMetricFamily

from ..core import routes
from ..core.errors import ProxyError
from ..core.headers import REQUEST_ID as REQUEST_ID_HEADER
from ..core.headers import REQUEST_ID_HEADERS
from ..core.metrics import PREFIX
from ..core.usage import RequestRecord
from ..relay.exchange import flow_state
from .runtime import Runtime

log = logging.getLogger("codex_api_proxy")

REQUEST_ID = "request_id"  # flow.metadata key, read by log lines
_TIMING = "cxp_timing"
_ID_HEADERS = tuple(h.encode() for h in REQUEST_ID_HEADERS)
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(flow: http.HTTPFlow) -> str:
    return flow.metadata.get(REQUEST_ID, "")


def relayed(flow: http.HTTPFlow) -> bool:
    """The gateway sent this flow upstream (through the relay)."""
    return flow_state(flow) is not None


def upstream_error(flow: http.HTTPFlow) -> ProxyError | None:
    """The upstream failure this flow's answer reported, streamed or not."""
    failure = getattr(flow_state(flow), "failure", None)
    return failure if isinstance(failure, ProxyError) else None


def error_kind(error: ProxyError) -> str:
    return error.code or f"status_{error.status}"


class RequestIds:
    """One id per request, to the client as `x-request-id` and in the log line. Upstream,
    `x-client-request-id` is the conversation's thread id as the Codex CLI sends it (the gateway's
    conversation headers), the request's own id only where there is no conversation."""

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        given = {k.lower(): v for k, v in flow.request.headers.fields if k.lower() in _ID_HEADERS}
        ids = (given.get(name, b"").decode("latin-1").strip() for name in _ID_HEADERS)
        rid = next((v for v in ids if _VALID_ID.fullmatch(v)), "") or secrets.token_hex(16)
        flow.metadata[REQUEST_ID] = rid

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.stream:
            self._stamp(flow.response, flow)  # a stream's headers leave right after this hook

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and not flow.response.stream:
            self._stamp(flow.response, flow)  # after the gateway, which may have replaced the answer

    @staticmethod
    def _stamp(response: http.Response, flow: http.HTTPFlow) -> None:
        if REQUEST_ID in flow.metadata:
            response.headers[REQUEST_ID_HEADER] = flow.metadata[REQUEST_ID]


@dataclass
class _Timing:
    """Kept on flow.metadata, which mitmweb deep-copies and writes with tnetstring (File > Save,
    Duplicate): a copy is a plain dict of the same fields."""

    route: str
    family: str
    dispatched: float | None = None  # wall clock when the last request hook was done
    first_byte: float | None = None  # wall clock of the first streamed body byte to the client
    streaming: bool = False  # counted in streams_in_flight
    counted: bool = False

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RequestMetrics:
    """Counts and times every flow once; must be the last addon (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        runtime.metrics.register(self.token_refreshes)

    def token_refreshes(self) -> list[CounterMetricFamily]:
        """Read from the current Credentials at scrape time (options may replace the object)."""
        outcomes = self.runtime.credentials.refresh_outcomes
        family = CounterMetricFamily(
            PREFIX + "token_refresh",
            "Access-token refreshes by this process, by outcome.",
            labels=["outcome"],
        )
        for outcome, n in sorted(outcomes.items()):
            family.add_metric([str(outcome)], n)
        return [family]

    def _timing(self, flow: http.HTTPFlow) -> _Timing:
        timing = flow.metadata.get(_TIMING)
        if not isinstance(timing, _Timing):  # new, or a plain copy (a flow mitmweb duplicated or replays)
            # labels from the routes table only: any other path is route "other", family "other"
            route = routes.find(routes.route_path(flow.request.path))
            timing = flow.metadata[_TIMING] = (
                _Timing(route.path, route.family) if route else _Timing("other", "other")
            )
        return timing

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._timing(flow)  # the route, before the gateway retargets the flow to the relay

    def request(self, flow: http.HTTPFlow) -> None:
        self._timing(flow).dispatched = time.time()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or not response.stream:
            return
        self._timing(flow).streaming = True
        self.runtime.metrics.streams_in_flight.inc()

    def response(self, flow: http.HTTPFlow) -> None:
        self.count(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.count(flow)  # the client went away, or mitmproxy could not complete the flow

    def count(self, flow: http.HTTPFlow) -> None:
        timing = self._timing(flow)
        if timing.counted:
            return
        timing.counted = True
        metrics = self.runtime.metrics
        if timing.streaming:
            timing.streaming = False
            metrics.streams_in_flight.dec()
        try:
            now = time.time()
            request, response = flow.request, flow.response
            status = response.status_code if response is not None and flow.error is None else 0
            started = request.timestamp_start
            state = flow_state(flow)
            overhead = getattr(state, "translate_seconds", 0.0)
            first_byte = getattr(state, "first_byte", None)
            if first_byte is not None:  # the relay's monotonic clock, onto the flow's wall clock
                timing.first_byte = now - (time.monotonic() - first_byte)
            elif response is not None:
                timing.first_byte = response.timestamp_start
            if timing.dispatched is not None:
                overhead += max(0.0, timing.dispatched - (request.timestamp_end or started))
            if response is not None and response.timestamp_end:
                overhead += max(0.0, now - response.timestamp_end)
            model = getattr(getattr(state, "ctx", None), "model", "") or ""
            metrics.count_request(
                timing.route,
                timing.family,
                status,
                model,
                seconds=max(0.0, now - started),
                first_byte=max(0.0, (timing.first_byte or now) - started),
                overhead=overhead,
            )
            error = upstream_error(flow)
            if error is not None:
                metrics.upstream_error(error_kind(error))
            usage = getattr(state, "usage", None)
            if usage:
                metrics.token_usage(model, usage)
            fields = {
                "request_id": request_id(flow),
                "method": request.method,
                "route": timing.route,
                "path": request.path.split("?", 1)[0][:200],  # as the client called it, /v1 and all
                "family": timing.family,
                "model": model,
                "model_sent": getattr(state, "model_sent", "") or "",
                "status": status or "aborted",
                "stream": bool(getattr(getattr(state, "ctx", None), "stream", False)),
                "ttfb_ms": round(max(0.0, (timing.first_byte or now) - started) * 1000, 1),
                "duration_ms": round(max(0.0, now - started) * 1000, 1),
                "input_tokens": (usage or {}).get("input", 0),
                "output_tokens": (usage or {}).get("output", 0),
                "error": error_kind(error) if error is not None else (flow.error.msg if flow.error else ""),
            }
            learnt = getattr(getattr(state, "ctx", None), "state", None)  # translate.base.RequestState
            metrics.record(
                RequestRecord(
                    time=started,
                    api=timing.family,
                    route=timing.route,
                    model=model[:64],
                    model_sent=fields["model_sent"][:64],
                    status=status,
                    stream=fields["stream"],
                    ttfb_ms=fields["ttfb_ms"],
                    duration_ms=fields["duration_ms"],
                    **{k: int((usage or {}).get(k, 0)) for k in ("input", "cached", "output", "reasoning")},
                    error=str(fields["error"])[:200],
                    conversation=getattr(learnt, "conversation", ""),
                ),
                getattr(getattr(learnt, "cache_thread", None), "miss", ""),
            )
            sent = fields["model_sent"]
            model_text = f" model={model}" + (f"->{sent}" if sent else "") if model or sent else ""
            log.info(
                "%(request_id)s %(method)s %(path)s %(family)s%(model_text)s "
                "status=%(status)s stream=%(stream)s ttfb=%(ttfb_ms)sms duration=%(duration_ms)sms "
                "tokens=%(input_tokens)s/%(output_tokens)s%(error_text)s",
                {**fields, "model_text": model_text,
                 "error_text": f" error={fields['error']}" if fields["error"] else ""},
                extra=fields,
            )  # fmt: skip
        except Exception:  # metrics must never break an answer
            log.exception("could not record the metrics of a request")
