"""What a Responses request to the Codex backend may carry: one allowlist per field, and the tool
types it takes under another name.

Source: the body the Codex CLI itself sends (codex-rs `ResponsesApiRequest`: model, instructions,
input, tools, tool_choice, parallel_tool_calls, reasoning {effort, summary}, store, stream, include,
service_tier, prompt_cache_key, text {verbosity, format}, client_metadata) and what
seed-behaviour.md §2.3-2.4 documents the backend refusing (max_output_tokens, sampling parameters,
metadata, stream_options, truncation, user, ... and any field outside that body, such as
prompt_cache_retention, context_management, background, safety_identifier). A field not listed here
is dropped before the request leaves, whichever family built it (logged once per field name at
debug), so a client written for the OpenAI API keeps working instead of getting the backend's 400.

The backend's hosted search is `web_search`; the OpenAI API's `web_search_preview` and its dated
variants (`web_search_preview_2025_03_11`) are the same tool under older names, renamed here.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# top-level field -> allowed keys inside it (None: the value is passed as it is)
ALLOWED_FIELDS: dict[str, frozenset[str] | None] = {
    "model": None,
    "instructions": None,
    "input": None,
    "tools": None,
    "tool_choice": None,
    "parallel_tool_calls": None,
    "reasoning": frozenset({"effort", "summary"}),
    "store": None,
    "stream": None,
    "include": None,
    "service_tier": None,
    "prompt_cache_key": None,
    "text": frozenset({"verbosity", "format"}),
    "client_metadata": None,
}
WEB_SEARCH_ALIASES = ("web_search_preview",)  # and their dated variants (prefix match)
_reported: set[str] = set()


_REPORTED_MAX = 1024  # field names remembered as logged (clients choose them: bounded)


def _note(field: str) -> None:
    if field in _reported:
        return
    if len(_reported) < _REPORTED_MAX:
        _reported.add(field)
    log.debug("not forwarded to the Codex backend, which does not take it: %.100s", field)


def _tool(tool: Any) -> Any:
    if isinstance(tool, dict) and str(tool.get("type", "")).startswith(WEB_SEARCH_ALIASES):
        return {**tool, "type": "web_search"}
    return tool


def apply(body: dict[str, Any]) -> dict[str, Any]:
    """The body with only what the backend takes (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key not in ALLOWED_FIELDS:
            _note(key)
            continue
        allowed = ALLOWED_FIELDS[key]
        if allowed is not None and isinstance(value, dict):
            for sub in value.keys() - allowed:
                _note(f"{key}.{sub}")
            value = {k: v for k, v in value.items() if k in allowed}
        out[key] = value
    if isinstance(out.get("tools"), list):
        out["tools"] = [_tool(t) for t in out["tools"]]
    choice = out.get("tool_choice")
    if isinstance(choice, dict) and str(choice.get("type", "")).startswith(WEB_SEARCH_ALIASES):
        out["tool_choice"] = {**choice, "type": "web_search"}
    return out
