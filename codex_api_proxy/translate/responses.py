"""OpenAI Responses API on the Codex backend: normalise requests, complete the final event.

The backend speaks the Responses API but with stricter rules (seed-behaviour §2.4): it must stream,
must not store, refuses sampling and size parameters and `system` items, and cannot resolve item ids
it never stored. Answers are relayed event by event; only `response.completed` is completed with the
output items, because the backend leaves its `output` empty and the openai SDK trusts that list.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ProxyError, bad_request
from ..sse import frame
from .accumulate import ResponseAccumulator
from .base import RequestContext, StreamTranslator
from .cache_key import prompt_cache_key

log = logging.getLogger(__name__)

# Accepted by the OpenAI API, refused by the Codex backend; dropped so that clients keep working.
DROPPED_PARAMS = (
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "metadata",
    "truncation",
    "user",
    "safety_identifier",
    "stream_options",
    "background",
)
# Need server-side state, which `store: false` rules out: refused rather than silently ignored.
STATEFUL_PARAMS = ("previous_response_id", "conversation")
ENCRYPTED_REASONING = "reasoning.encrypted_content"


def _normalise_item(item: Any, index: int) -> Any:
    if not isinstance(item, dict):
        raise bad_request(f"input[{index}] must be an object", param=f"input[{index}]")
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "item_reference":
        raise bad_request(
            "item_reference input items are not supported: the Codex backend does not store items; "
            "send the item itself",
            param=f"input[{index}]",
        )
    item = dict(item)
    if kind == "reasoning":
        if not item.get("encrypted_content"):
            item.pop("id", None)  # an id alone points at nothing the backend kept
    else:
        item.pop("id", None)
    if kind == "message" and item.get("role") == "system":
        item["role"] = "developer"
    return item


def to_upstream(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A client's Responses request -> one the Codex backend accepts (changes logged at debug)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model is required", param="model")
    for name in STATEFUL_PARAMS:
        if body.get(name):
            raise bad_request(
                f"{name} is not supported: the Codex backend does not store responses "
                "(store=false); send the whole conversation in input",
                param=name,
            )
    ctx.model, ctx.stream = model, bool(body.get("stream"))
    out = {k: v for k, v in body.items() if k not in DROPPED_PARAMS and k not in STATEFUL_PARAMS}
    dropped = [k for k in DROPPED_PARAMS if k in body]

    raw_input = body.get("input")
    if isinstance(raw_input, str):
        raw_input = [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw_input}]}
        ]
    elif raw_input is None:
        raw_input = []
    elif not isinstance(raw_input, list):
        raise bad_request("input must be a string or a list of items", param="input")
    out["input"] = [_normalise_item(item, i) for i, item in enumerate(raw_input)]

    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("instructions must be a string", param="instructions")
    if not instructions:
        out.pop("instructions", None)

    include = [x for x in (body.get("include") or []) if isinstance(x, str)]
    if ENCRYPTED_REASONING not in include:
        include.append(ENCRYPTED_REASONING)  # every Codex model reasons; without it replays lose the chain
    out["include"] = include
    if not out.get("prompt_cache_key"):
        out["prompt_cache_key"] = prompt_cache_key(ctx.headers, out["input"], instructions)
    out["stream"], out["store"] = True, False
    log.debug(
        "responses request normalised: dropped=%s forced stream/store, %d input items",
        dropped,
        len(out["input"]),
    )
    return out


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in response.get("output") or []
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


def from_response(response: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The aggregated Responses object, as the OpenAI API returns it to a non-streaming client."""
    result = dict(response)
    result.setdefault("status", "completed")
    result["output_text"] = output_text(response)
    return result


class Stream(StreamTranslator):
    """Upstream events relayed as they come; `response.completed` gets the full output list."""

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.acc = ResponseAccumulator()
        self.sequence = 0

    def on_event(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        self.acc.feed(data)
        if kind in ("response.completed", "response.incomplete"):
            data = {**data, "response": self.acc.response()}
        if isinstance(data.get("sequence_number"), int):
            self.sequence = data["sequence_number"]
        return [frame(data, kind)]

    def on_failure(self, error: ProxyError) -> list[bytes]:
        if self.failure_event and self.failure_event.get("type") == "response.failed":
            return [frame(self.failure_event, "response.failed")]
        return [error_event(error, self.sequence + 1)]


def error_event(error: ProxyError, sequence_number: int | None = None) -> bytes:
    """A Responses `error` event; it also carries `error`, on which the openai SDK raises APIError."""
    body = error.openai_body()["error"]
    event = {"type": "error", "code": error.code or body["type"], "message": error.message, "param": None}
    if sequence_number is not None:
        event["sequence_number"] = sequence_number
    return frame({**event, "error": body}, "error")
