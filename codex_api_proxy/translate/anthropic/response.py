"""Codex Responses result -> one Anthropic message, the pieces the stream shares, and the local answer
to Claude Code's count_tokens probe.

- Stop sequences are applied here (the backend has none): the text is cut at the first match and the
  message ends with stop_reason "stop_sequence".
- Unparseable function-call arguments in a whole response become {"_raw_arguments": "<raw>"}, never a
  silent {}: the client's schema check fails visibly and the model sees what it sent.
- A reasoning item without summary text still becomes a thinking block (empty thinking + signature):
  the SDKs and Claude Code accept it and echo it back.
- Token counts (count_tokens and the probe) are local (tokens.py), scaled by the conversation's
  calibration, which every finished turn feeds with the input tokens the backend reported.
- Probes: a non-streaming request with max_tokens == 1 is Claude Code's count_tokens fallback; it is
  answered locally (the backend cannot cap output, so forwarding would generate a whole answer) with
  usage.input_tokens from tokens.py, content [] (an empty text block would be invalid if echoed back)
  and stop_reason "max_tokens".
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from ...core import tokens
from ...core.errors import ProxyError
from ..accumulate import usage_of
from ..base import RequestContext, client_errors
from .request import to_upstream
from .signature import encode_signature
from .web_search import (
    citation,
    result_block,
    search_pages,
    search_query,
    server_tool_id,
    url_citations,
    use_block,
    with_searches,
)

log = logging.getLogger(__name__)


def message_id(response_id: Any) -> str:
    if isinstance(response_id, str) and response_id:
        return "msg_" + response_id.split("_", 1)[-1]
    return "msg_" + uuid.uuid4().hex[:24]


def anthropic_usage(response: dict[str, Any]) -> dict[str, int]:
    usage = usage_of(response)
    return {
        "input_tokens": max(0, usage["input"] - usage["cached"]),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage["cached"],
        "output_tokens": usage["output"],
    }


def stop_reason(response: dict[str, Any], tool_used: bool, refusal: bool) -> str:
    reason = (response.get("incomplete_details") or {}).get("reason")
    if reason == "max_output_tokens":
        return "max_tokens"
    if reason == "content_filter" or refusal:
        return "refusal"
    return "tool_use" if tool_used else "end_turn"


def first_stop(text: str, stops: list[str]) -> tuple[int, str] | None:
    """(start, sequence) of the stop sequence that completes first in `text`."""
    best: tuple[int, int, str] | None = None
    for seq in stops:
        start = text.find(seq)
        if start >= 0 and (best is None or (start + len(seq), start) < best[:2]):
            best = (start + len(seq), start, seq)
    return (best[1], best[2]) if best else None


def summary_text(item: dict[str, Any]) -> str:
    parts = [p.get("text") or "" for p in item.get("summary") or [] if isinstance(p, dict)]
    return "\n\n".join(p for p in parts if p)


def _arguments(raw: Any) -> dict[str, Any]:
    """Function-call arguments as a tool_use input (see the module docstring for invalid JSON)."""
    text = raw if isinstance(raw, str) else ""
    if not text.strip():
        return {}
    try:
        value, _ = json.JSONDecoder().raw_decode(text.strip())  # trailing junk is ignored, as the SDKs do
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    log.warning("function call arguments are not a JSON object: %.200s", text)
    return {"_raw_arguments": text}


def from_response(response: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The aggregated Responses object -> one Anthropic message."""
    names = ctx.state.tool_names
    stops = ctx.state.stop_sequences
    content: list[dict[str, Any]] = []
    tool_used = refusal = False
    stop: str | None = None
    turn_done(response, ctx)
    output = response.get("output") or []
    searches = 0
    for i, item in enumerate(output):
        kind = item.get("type")
        if kind == "reasoning" and ctx.state.thinking:
            enc = item.get("encrypted_content")
            text = summary_text(item)
            if enc or text:
                sig = encode_signature(item.get("id") or "", enc, ctx.state.upstream_model) if enc else ""
                content.append({"type": "thinking", "thinking": text, "signature": sig})
        elif kind == "message":
            for part in item.get("content") or []:
                ptype = part.get("type")
                if ptype not in ("output_text", "refusal"):
                    continue
                refusal = refusal or ptype == "refusal"
                text = part.get("text" if ptype == "output_text" else "refusal") or ""
                hit = first_stop(text, stops)
                if hit:
                    text, stop = text[: hit[0]], hit[1]
                if text:
                    cites = [
                        citation(a, text) for a in url_citations(part) if a.get("end_index", 0) <= len(text)
                    ]
                    content.append({"type": "text", "text": text, **({"citations": cites} if cites else {})})
                if stop is not None:
                    break
        elif kind == "web_search_call" and (query := search_query(item)) is not None:
            searches += 1  # page visits (no query) are folded into the search before them
            urls, cites = search_pages(output, i)
            content += [use_block(item, query), result_block(server_tool_id(item), urls, cites)]
        elif kind == "function_call":
            tool_used = True
            name = item.get("name") or ""
            content.append(
                {
                    "type": "tool_use",
                    "id": item.get("call_id") or item.get("id") or "",
                    "name": names.get(name, name),
                    "input": _arguments(item.get("arguments")),
                }
            )
        if stop is not None:
            break
    return {
        "id": message_id(response.get("id")),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": "stop_sequence" if stop is not None else stop_reason(response, tool_used, refusal),
        "stop_sequence": stop,
        "usage": with_searches(anthropic_usage(response), searches),
    }


def turn_done(response: dict[str, Any], ctx: RequestContext) -> None:
    """A finished turn's usage feeds the conversation's token calibration and its cache health."""
    usage, body, key = usage_of(response), ctx.state.request_body, ctx.state.cache_key
    calibration = ctx.options.calibration
    if body is not None and calibration is not None:
        calibration.observe_turn(key, body, usage["input"])
    health = ctx.options.cache_health
    if health is not None:
        health.note_usage(
            ctx.state.cache_thread, key, ctx.state.upstream_model, usage["input"], usage["cached"]
        )


@client_errors
def count_tokens(
    body: dict[str, Any], headers: dict[str, str], calibration: tokens.Calibration | None = None
) -> int:
    """Input tokens of a Messages body as the backend would count them: the local count, calibrated by
    earlier turns of the same conversation (the key its /v1/messages requests get)."""
    if calibration is None:
        return tokens.count_tokens(body)
    local = calibration.count(body)
    try:
        key = to_upstream({"model": "-", **body}, RequestContext(headers=headers))["prompt_cache_key"]
    except ProxyError:
        return local  # a body only count_tokens accepts (tool_result without its call...): no conversation
    return calibration.apply(key, local)


def is_probe(body: Any) -> bool:
    """Claude Code's count_tokens fallback: non-streaming, max_tokens exactly 1."""
    if not isinstance(body, dict) or body.get("stream"):
        return False
    limit = body.get("max_tokens")
    return isinstance(limit, int) and not isinstance(limit, bool) and limit == 1


def probe_response(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The local answer to a probe (see the module docstring)."""
    return {
        "id": message_id(None),
        "type": "message",
        "role": "assistant",
        "model": ctx.model or body.get("model") or "",
        "content": [],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": count_tokens(body, ctx.headers, ctx.options.calibration),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        },
    }
