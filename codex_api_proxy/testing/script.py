"""What the fake backend answers: the output items a scripted `Turn` streams, the Turn itself
(status, failures, cuts, delays, stream shapes), the `Recorded` request, as tests write them, and the
model catalog (DEFAULT_MODELS).
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

DEFAULT_TEXT = "Hello from the fake Codex backend."


@dataclass(frozen=True)
class Text:
    text: str
    chunks: int = 3
    annotations: tuple[dict[str, Any], ...] = ()  # url_citation annotations (see cited_text)


@dataclass(frozen=True)
class Reasoning:
    summary: tuple[str, ...]
    encrypted_content: str | None = None


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: str
    call_id: str | None = None
    chunks: int = 2


@dataclass(frozen=True)
class CustomToolCall:
    name: str
    input: str
    call_id: str | None = None
    chunks: int = 2


@dataclass(frozen=True)
class WebSearch:
    """A hosted web search the backend ran (a `web_search_call` item) and the pages it found."""

    query: str
    sources: tuple[str, ...] = ()  # urls; sent only when the request includes web_search_call.action.sources


OutputSpec = Text | Reasoning | FunctionCall | CustomToolCall | WebSearch


def text(value: str, chunks: int = 3) -> Text:
    """An assistant message, streamed as `chunks` output_text deltas."""
    return Text(value, chunks)


def reasoning(
    summary: str | Iterable[str] = "Thinking...", encrypted_content: str | None = None
) -> Reasoning:
    """A reasoning item (one summary part per string, [] for none). Without `encrypted_content` the
    fake issues `enc_<random>`; either way it remembers it, so only those can be replayed."""
    parts = (summary,) if isinstance(summary, str) else tuple(summary)
    return Reasoning(parts, encrypted_content)


def function_call(name: str, arguments: str | dict[str, Any], call_id: str | None = None) -> FunctionCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
    return FunctionCall(name, args, call_id)


def web_search(query: str, *sources: str) -> WebSearch:
    """A `web_search_call` item for `query` that found `sources` (urls)."""
    return WebSearch(query, sources)


def cited_text(value: str, *citations: tuple[str, str, str], chunks: int = 3) -> Text:
    """An assistant message whose text cites web pages: each citation is (url, title, quoted span of
    `value`), sent as a url_citation annotation over that span, as the Responses API does."""
    annotations = []
    for url, title, span in citations:
        start = value.index(span)
        annotations.append(
            {
                "type": "url_citation",
                "start_index": start,
                "end_index": start + len(span),
                "url": url,
                "title": title,
            }
        )
    return Text(value, chunks, tuple(annotations))


def custom_tool_call(name: str, input: str, call_id: str | None = None) -> CustomToolCall:
    """A freeform (`custom`) tool call such as Codex's apply_patch."""
    return CustomToolCall(name, input, call_id)


@dataclass
class Turn:
    """One scripted answer to one POST /responses (see the module and field comments)."""

    output: list[OutputSpec] = field(default_factory=lambda: [text(DEFAULT_TEXT)])
    usage: dict[str, Any] | None = None  # None: realistic numbers derived from the request and output
    status: int = 200  # != 200: a plain JSON error answer (error_body, headers) instead of a stream
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent with the stream or the error answer
    fail: dict[str, Any] | None = None  # {"code", "message"}: end with response.failed
    error_event: dict[str, Any] | None = None  # emitted as {"type": "error", "error": <this>}, then EOF
    incomplete: str | None = None  # reason: end with response.incomplete
    cut_after: int | None = None  # close the connection after this many events, no terminal event
    cut_clean: bool = False  # with cut_after: end the chunked body properly instead of dropping it
    delay: float = 0.0  # seconds between events
    stall: float = 0.0  # seconds of silence after response.created
    delay_headers: float = 0.0  # seconds before the status line
    shapes: frozenset[str] = frozenset()  # STREAM_SHAPES this answer's stream has (Codex route only)

    @classmethod
    def usage_limit(cls, resets_in_seconds: int = 120, plan_type: str = "plus") -> Turn:
        """The backend's 429 when the plan's window is used up: the error `type` (what the Codex
        CLI matches on), the plan, the reset as an epoch and as seconds, and the rate-limit headers."""
        resets_at = int(time.time()) + resets_in_seconds
        body = {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": plan_type,
                "resets_at": resets_at,
                "resets_in_seconds": resets_in_seconds,
            }
        }
        headers = {
            "x-codex-primary-used-percent": "100.0",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-after-seconds": str(resets_in_seconds),
            "x-codex-primary-reset-at": str(resets_at),
            "x-codex-secondary-used-percent": "41.0",
            "x-codex-secondary-window-minutes": "10080",
        }
        return cls(status=429, error_body=body, headers=headers)

    @classmethod
    def http_error(
        cls, status: int = 500, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> Turn:
        body = {"detail": detail or phrase(status)}
        return cls(status=status, error_body=body, headers=headers or {})

    @classmethod
    def rate_limited(cls, seconds: float = 1.5) -> Turn:
        message = f"Rate limit reached for requests. Please try again in {seconds}s."
        return cls(output=[], fail={"code": "rate_limit_exceeded", "message": message})

    @classmethod
    def context_length_exceeded(cls) -> Turn:
        message = (
            "Your input exceeds the context window of this model. Please adjust your input and try again."
        )
        return cls(output=[], fail={"code": "context_length_exceeded", "message": message})


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON (or form fields), None when empty or unparsable
    raw: bytes
    status: int | None = None  # what the fake answered
    received_at: float = field(default_factory=time.monotonic)
    # when the client closed the connection while this request was still being answered (the proxy
    # must stop an upstream request whose own client went away)
    closed_at: float | None = None


def hex_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # 529 and friends
        return "Overloaded" if status == 529 else "Error"


def split_text(value: str, n: int) -> list[str]:
    """`value` in `n` non-empty pieces (fewer when it is shorter)."""
    n = max(1, min(n, len(value)))
    bounds = [i * len(value) // n for i in range(n + 1)]
    return [value[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# ---- the model catalog GET /models answers ----------------------------------------------------------


def levels(*efforts: str) -> list[dict[str, str]]:
    return [{"effort": e, "description": f"{e.capitalize()} reasoning effort"} for e in efforts]


def catalog_entry(
    slug: str, name: str, priority: int, visibility: str = "list", **extra: Any
) -> dict[str, Any]:
    return {
        "slug": slug,
        "display_name": name,
        "description": f"{name} (fake catalog entry)",
        "default_reasoning_level": "medium",
        "supported_reasoning_levels": levels("low", "medium", "high", "xhigh"),
        "visibility": visibility,
        "supported_in_api": True,
        "priority": priority,
        "minimal_client_version": "0.1.0",
        "shell_type": "shell_command",
        "context_window": 272000,
        "input_modalities": ["text", "image"],
        "service_tiers": [{"id": "priority"}],
        **extra,
    }


DEFAULT_MODELS = [
    catalog_entry("gpt-5.5", "GPT-5.5", 1),
    catalog_entry("gpt-5.4", "GPT-5.4", 2),
    catalog_entry(
        "gpt-5.4-mini", "GPT-5.4 mini", 3, supported_reasoning_levels=levels("low", "medium", "high")
    ),
    catalog_entry("codex-auto-review", "Codex auto review", 10, visibility="hide"),
]
