"""One error type for everything that goes wrong, and the two envelopes clients understand (built here
only: `openai_body`, `anthropic_body`; `body` picks one by the client's family).

Every failure (bad input, local auth, credentials, upstream HTTP errors, failures inside an upstream
stream, transport errors) becomes a `ProxyError`; each API family renders it in its own dialect, so a
client never sees a raw upstream body or an HTML page.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .headers import rate_limit_headers
from .upstream_errors import FAILURE_STATUS, RELOGIN_HINT, failure_status

# Events the upstream relay injects into a relayed stream (upstream dialect, `type` like any other event).
HEARTBEAT_EVENT = "proxy.heartbeat"
ERROR_EVENT = "proxy.error"

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_TRY_AGAIN = re.compile(r"try again in\s+([0-9.]+)\s*(ms|s)", re.IGNORECASE)
# Fields of an upstream error object that carry meaning for clients (the Codex CLI reads them to
# show "You've hit your usage limit ... try again at 6:45 AM" instead of retrying): kept as they came.
_KEPT_FIELDS = ("plan_type", "resets_at", "resets_in_seconds", "rate_limit_reached_type", "promo_message")
_USAGE_TYPES = ("usage_limit_reached", "usage_not_included", "insufficient_quota")


@dataclass
class ProxyError(Exception):
    status: int
    message: str
    code: str | None = None
    param: str | None = None
    retry_after: int | None = None
    kind: str | None = None  # the upstream's own error `type` (e.g. usage_limit_reached), kept for clients
    details: dict[str, Any] = field(default_factory=dict)  # _KEPT_FIELDS the upstream sent
    upstream_headers: dict[str, str] = field(default_factory=dict)  # x-codex-* & co. to pass back

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"

    def headers(self) -> dict[str, str]:
        out = dict(self.upstream_headers)
        if self.retry_after is not None:
            out["retry-after"] = str(self.retry_after)
        return out

    def openai_body(self) -> dict[str, Any]:
        kind = self.kind or _OPENAI_TYPES.get(
            self.status, "server_error" if self.status >= 500 else "invalid_request_error"
        )
        error = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return {"error": {**error, **self.details}}

    def anthropic_message(self) -> str:
        """The message, with when the limit resets (Anthropic errors have no field for it)."""
        at = self.details.get("resets_at")
        if not isinstance(at, int | float):
            return self.message
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        minutes = max(0, round((at - time.time()) / 60))
        plan = self.details.get("plan_type")
        what = f"{self.code or 'limit'}{f', {plan} plan' if plan else ''}"
        return f"{self.message} ({what}; resets at {when}, in about {minutes} min)"

    def anthropic_type(self) -> str:
        return _ANTHROPIC_TYPES.get(
            self.status, "api_error" if self.status >= 500 else "invalid_request_error"
        )

    def anthropic_body(self) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.anthropic_type(), "message": self.anthropic_message()},
        }

    def body(self, anthropic: bool) -> dict[str, Any]:
        """The envelope of the client's family: Anthropic's for the Messages routes, else OpenAI's."""
        return self.anthropic_body() if anthropic else self.openai_body()

    def either_body(self) -> dict[str, Any]:
        """For an answer whose client is not known (mitmproxy's own error pages): Anthropic's envelope
        with OpenAI's fields inside, which both families' SDKs read."""
        return {"type": "error", "error": {**self.openai_body()["error"], "type": self.anthropic_type()}}

    def encoded(self, anthropic: bool) -> bytes:
        """`body` as the bytes of a JSON answer."""
        return json.dumps(self.body(anthropic), separators=(",", ":")).encode()

    def event(self) -> dict[str, Any]:
        """The relay's in-band form, parsed back by `from_event`."""
        return {
            "type": ERROR_EVENT,
            "status": self.status,
            "message": self.message,
            "code": self.code,
            "retry_after": self.retry_after,
        }


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    return ProxyError(400, message, code=code, param=param)


def _retry_after(headers: Any, err: dict[str, Any], message: str) -> int | None:
    raw = headers.get("retry-after") if headers is not None else None
    if raw:
        try:
            return max(0, int(float(raw)))
        except ValueError:
            pass
    secs = err.get("resets_in_seconds")
    if isinstance(secs, int | float):
        return max(0, int(secs))
    at = err.get("resets_at")
    if isinstance(at, int | float):
        return max(0, int(at - time.time()))
    m = _TRY_AGAIN.search(message or "")
    if m:
        value = float(m.group(1)) / (1000 if m.group(2).lower() == "ms" else 1)
        return max(1, int(value + 0.999))
    return None


def _error_fields(payload: Any) -> tuple[dict[str, Any], str, str | None]:
    """(error object, message, code) from any upstream error body shape we know."""
    if not isinstance(payload, dict):
        return {}, "", None
    err = payload.get("error")
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        return err, str(err.get("message") or code or ""), code if isinstance(code, str) else None
    if isinstance(err, str):
        return {}, err, None
    detail = payload.get("detail")
    if isinstance(detail, str):
        return {}, detail, None
    if isinstance(detail, dict):
        return _error_fields({"error": detail})
    message = payload.get("message")
    code = payload.get("code")
    return payload, str(message or ""), code if isinstance(code, str) else None


def _details(err: dict[str, Any]) -> dict[str, Any]:
    """The meaningful extra fields of an upstream error object; a reset time in both forms (the
    Codex CLI reads `resets_at`, an integer epoch, other clients `resets_in_seconds`)."""
    out = {k: err[k] for k in _KEPT_FIELDS if err.get(k) is not None}
    at, secs = out.get("resets_at"), out.get("resets_in_seconds")
    if isinstance(secs, int | float) and not isinstance(at, int | float):
        out["resets_at"] = int(time.time() + secs)
    elif isinstance(at, int | float) and not isinstance(secs, int | float):
        out["resets_in_seconds"] = max(0, int(at - time.time()))
    return out


def _kind(err: dict[str, Any]) -> str | None:
    """The upstream's error type; a usage code alone counts as one (the Codex CLI matches the type)."""
    kind = err.get("type")
    if isinstance(kind, str) and kind and kind != "error":
        return kind
    code = err.get("code")
    return code if code in _USAGE_TYPES else None


def from_upstream(status: int, body: bytes, headers: Any = None) -> ProxyError:
    """An upstream HTTP error response, kept at its status with its message, type, reset fields and
    rate-limit headers."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    err, message, code = _error_fields(payload)
    if not message:
        text = body.decode("utf-8", "replace").strip()
        message = text[:500] if text and not text.startswith("<") else f"upstream returned HTTP {status}"
    retry = _retry_after(headers, err, message) if status in (429, 503, 529) else None
    return ProxyError(
        status, message, code=code, retry_after=retry, kind=_kind(err), details=_details(err),
        upstream_headers=rate_limit_headers(headers),
    )  # fmt: skip


def from_event(data: dict[str, Any]) -> ProxyError:
    """A failure reported inside an upstream stream: `response.failed`, `error`, or the relay's own."""
    kind = data.get("type")
    if kind == ERROR_EVENT:
        return ProxyError(
            int(data.get("status") or 502),
            str(data.get("message") or "upstream failed"),
            code=data.get("code"),
            retry_after=data.get("retry_after"),
        )
    if kind == "response.failed":
        response = data.get("response") or {}
        err = response.get("error") or {}
    else:  # top-level `error` event: fields flat or under `error`
        err = data.get("error") if isinstance(data.get("error"), dict) else data
    code = err.get("code") or err.get("type")
    code = code if isinstance(code, str) and code != "error" else None
    message = str(err.get("message") or code or "upstream response failed")
    status = failure_status(code)
    if isinstance(err.get("status"), int) and err["status"] >= 400 and code not in FAILURE_STATUS:
        status = err["status"]
    if status == 401:
        message = f"{message} ({RELOGIN_HINT})"
    retry = _retry_after(None, err, message) if status in (429, 529) else None
    return ProxyError(status, message, code=code, retry_after=retry, kind=_kind(err), details=_details(err))
