"""OpenAI Responses API on the Codex backend: normalise requests, complete the final event.

The backend speaks the Responses API but with stricter rules (seed-behaviour §2.4): it must stream,
must not store, refuses sampling and size parameters and `system` items, and cannot resolve item ids
it never stored: `item_reference` items and `previous_response_id` are expanded here from the proxy's
own conversation store (conversations.py), filled from every finished response. Answers are relayed event by event; only `response.completed` is completed with the
output items, because the backend leaves its `output` empty and the openai SDK trusts that list.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from ...core.conversations import Conversation
from ...core.errors import ProxyError, bad_request
from ...core.sse import frame
from .. import tool_names, tool_order, upstream_policy
from ..accumulate import ResponseAccumulator
from ..base import RequestContext, StreamTranslator, client_errors
from ..cache_key import prompt_cache_key

log = logging.getLogger(__name__)

# A server-side conversation object: not emulated, refused rather than silently ignored.
STATEFUL_PARAMS = ("conversation",)
ENCRYPTED_REASONING = "reasoning.encrypted_content"
_STORE_HINT = (
    "codex-api-proxy keeps items and responses in memory per account, bounded in size and age "
    "(README: Stored state), and this one was never relayed here or has been evicted"
)


def _normalise_item(item: Any, index: int) -> Any:
    if not isinstance(item, dict):
        raise bad_request(f"input[{index}] must be an object", param=f"input[{index}]")
    kind = item.get("type", "message" if "role" in item else None)
    item = dict(item)
    if kind == "reasoning":
        if not item.get("encrypted_content"):
            item.pop("id", None)  # an id alone points at nothing the backend kept
    else:
        item.pop("id", None)  # store=false: the backend refuses ids it cannot resolve
    if kind == "message" and item.get("role") == "system":
        item["role"] = "developer"
    return item


def _resolve(item: Any, index: int, conversation: Conversation | None) -> Any:
    """An `item_reference` (or a reasoning item reduced to its id) -> the item the store kept."""
    if not isinstance(item, dict):
        return item
    kind = item.get("type")
    if kind == "item_reference":
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise bad_request(f"input[{index}]: item_reference needs an id", param=f"input[{index}]")
        stored = conversation.item(item_id) if conversation else None
        if stored is None:
            raise bad_request(
                f"Item with id '{item_id}' not found (input[{index}] item_reference): {_STORE_HINT}; "
                "send the item itself",
                param=f"input[{index}]",
                code="item_not_found",
            )
        return stored
    if kind == "reasoning" and not item.get("encrypted_content") and conversation and item.get("id"):
        stored = conversation.item(item["id"])
        if stored and stored.get("encrypted_content"):
            return {**item, "encrypted_content": stored["encrypted_content"]}
    return item


def _history(body: dict[str, Any], conversation: Conversation | None) -> list[dict[str, Any]]:
    """`previous_response_id` -> that turn's input and output, which the new input continues."""
    previous = body.get("previous_response_id")
    if previous is None:
        return []
    if not isinstance(previous, str) or not previous:
        raise bad_request("previous_response_id must be a non-empty string", param="previous_response_id")
    turn = conversation.turn(previous) if conversation else None
    if turn is None:
        raise bad_request(
            f"Previous response with id '{previous}' not found: {_STORE_HINT}; "
            "send the whole conversation in input",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return [_normalise_item(item, i) for i, item in enumerate(turn.history())]


_SKIPPED = frozenset((*STATEFUL_PARAMS, "previous_response_id"))  # resolved here, never sent upstream


def normalise(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """What `/responses` and `/responses/compact` share: the client's parameters the backend refuses
    dropped (upstream_policy.py), stored state expanded, input items in the shape a store=false backend
    accepts, tool names the backend would refuse shortened (tool_names.py)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model is required", param="model")
    for name in STATEFUL_PARAMS:
        if body.get(name):
            raise bad_request(
                f"{name} is not supported: the Codex backend does not store conversations; "
                "send the whole conversation in input or use previous_response_id",
                param=name,
            )
    ctx.model, ctx.stream = model, bool(body.get("stream"))
    out = {k: v for k, v in body.items() if k not in _SKIPPED}

    raw_input = body.get("input")
    if isinstance(raw_input, str):
        raw_input = [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw_input}]}
        ]
    elif raw_input is None:
        raw_input = []
    elif not isinstance(raw_input, list):
        raise bad_request("input must be a string or a list of items", param="input")
    conversation = ctx.options.conversation
    history = _history(body, conversation)
    resolved = [_resolve(item, i, conversation) for i, item in enumerate(raw_input)]
    new = [_normalise_item(item, i) for i, item in enumerate(resolved)]
    out["input"] = history + new
    if body.get("store") is not False:  # the OpenAI API's default; `store: false` keeps nothing, as there
        # items the client sent itself, by id (ones it referenced are in the store already)
        own = [
            item
            for item, raw in zip(resolved, raw_input, strict=True)
            if isinstance(item, dict)
            and item.get("id")
            and isinstance(raw, dict)
            and raw.get("type") != "item_reference"
        ]
        ctx.state.conversation_sent = (out["input"], own)

    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("instructions must be a string", param="instructions")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise bad_request("tools must be an array of objects", param="tools")
    key = body.get("prompt_cache_key")
    if key is not None and not isinstance(key, str):
        raise bad_request("prompt_cache_key must be a string", param="prompt_cache_key")
    if not instructions:
        out.pop("instructions", None)
    if not out.get("prompt_cache_key"):
        out["prompt_cache_key"] = prompt_cache_key(ctx.headers, out["input"], instructions)
    out = upstream_policy.apply(out)
    ctx.state.tool_names = tool_names.shorten(out)
    tool_order.arrange(out, ctx.options.tool_order)
    log.debug("responses request normalised: %d history + %d input items", len(history), len(new))
    return out


@client_errors
def to_upstream(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A client's Responses request -> one the Codex backend accepts (changes logged at debug).
    `store` (true unless the client says false, like the OpenAI API) is emulated here
    (conversations.py); upstream always gets false."""
    out = normalise(body, ctx)
    include = [x for x in (body.get("include") or []) if isinstance(x, str)]
    if ENCRYPTED_REASONING not in include:
        include.append(ENCRYPTED_REASONING)  # every Codex model reasons; without it replays lose the chain
    out["include"] = include
    out["stream"], out["store"] = True, False
    return out


def remember(response: dict[str, Any], ctx: RequestContext) -> None:
    """A finished response goes into the conversation store, so later requests can refer to it."""
    conversation, sent = ctx.options.conversation, ctx.state.conversation_sent
    if conversation is None or sent is None:
        return
    conversation.remember(response.get("id"), sent[0], response.get("output") or [], sent[1])


def refuse_websocket(headers: Mapping[str, str]) -> None:
    """A WebSocket upgrade of `/v1/responses` gets 426 Upgrade Required at once: it is the one answer
    on which the Codex CLI falls back to HTTP cleanly (any other status costs it retries first, 5-10 s
    a session). A Responses WebSocket transport would start here, serving `response.create` frames
    with conversations.py for `previous_response_id` across the socket's turns."""
    if "websocket" in headers.get("upgrade", "").lower():
        raise ProxyError(
            426,
            "codex-api-proxy serves the Responses API over HTTP only: POST /v1/responses",
            code="websocket_not_supported",
        )


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
    names = ctx.state.tool_names
    response = {**response, "output": [tool_names.restore(i, names) for i in response.get("output") or []]}
    remember(response, ctx)
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
        self.sequence = -1  # the last sequence_number sent (the Responses API counts from 0)
        self.started = False  # response.created was sent (the upstream's or one made up, see _created)
        self.own_id: str | None = None  # the id given to a response whose stream named none

    def on_event(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        names, original = self.ctx.state.tool_names, data
        if names and isinstance(data.get("item"), dict):
            item = tool_names.restore(data["item"], names)
            data = data if item is data["item"] else {**data, "item": item}
        out = self._created(kind, data)
        self.acc.feed(data)
        upstream_number = data.get("sequence_number")
        self.sequence += 1  # numbered in the order sent: events.py may have held some back
        if kind in ("response.completed", "response.incomplete"):
            response = self.acc.response()
            if self.own_id:
                response["id"] = self.own_id
            data = {**data, "response": response, "sequence_number": self.sequence}
            remember(data["response"], self.ctx)
            return [*out, frame(data, kind)]
        raw = self.raw_data if data is original else ""  # as it came, unless reshaped or renamed
        if raw and "\n" not in raw and upstream_number == self.sequence:
            return [*out, frame(raw, kind)]
        return [*out, frame({**data, "sequence_number": self.sequence}, kind)]

    def _created(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        """A stream must open with `response.created` (the openai SDK refuses anything else first). A
        stream that has none (as in the Codex CLI's own test fixtures) gets one: with the id of the
        first event that names its response, else an id of ours that the final event then carries."""
        if self.started:
            return []
        self.started = True
        if kind == "response.created":
            return []
        response = (
            dict(data.get("response") or {}) if kind in ("response.in_progress", "response.queued") else {}
        )
        if not response.get("id"):
            self.own_id = response["id"] = "resp_" + uuid.uuid4().hex
        response.update(object="response", status="in_progress", output=[])
        response.setdefault("model", self.ctx.model)
        self.sequence += 1
        event = {"type": "response.created", "response": response, "sequence_number": self.sequence}
        self.acc.feed(event)
        return [frame(event, "response.created")]

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
