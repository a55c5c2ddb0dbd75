"""POST /v1/responses/compact -> the Codex backend's `{upstream}/responses/compact` and back.

The Codex CLI's v1 remote compaction (codex-rs compact_remote.rs): one unary JSON request with the
conversation (`model, input, instructions, tools, parallel_tool_calls, reasoning, text...`) answered by
`{"output": [...]}`, the compacted history the client continues from. The request gets the same
normalisation as `/responses` (stored state expanded, refused parameters dropped, ids the backend
cannot resolve removed) but stays unary: no stream, no store, no include.
"""

from __future__ import annotations

import json
from typing import Any

from ...core.errors import ProxyError
from ..base import RequestContext, client_errors
from . import normalise

UNARY_ONLY = ("stream", "store", "include")


@client_errors
def to_upstream(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    out = {k: v for k, v in normalise(body, ctx).items() if k not in UNARY_ONLY}
    ctx.stream = False
    return out


def aggregate(body: bytes) -> dict[str, Any]:
    """The backend's JSON answer; anything but `{"output": [...]}` is a bad upstream answer."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("output"), list):
        raise ProxyError(502, "upstream compact answer has no output list", code="bad_upstream_response")
    return payload


def from_response(response: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return response
