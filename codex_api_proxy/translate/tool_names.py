"""Tool names the backend accepts, on every route, and the client's own names in every answer.

The Responses API takes tool names matching `[A-Za-z0-9_-]{1,64}` (longer ones get the backend's 400
`string_above_max_length`). Any other name is sent as its sanitised prefix + "_" + 8 hex of its sha1:
deterministic, so the same tool has the same upstream name turn after turn (the prompt cache and the
history's calls stay consistent). `shorten` renames a whole upstream body (tools, history calls,
tool_choice) and returns {upstream name: client name}; answers map names back through it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAMED_CALLS = ("function_call", "custom_tool_call")
_NAMED_TOOLS = ("function", "custom")


def upstream_tool_name(name: str) -> str:
    """A name the Responses API accepts; unchanged when it already is one."""
    if _TOOL_NAME.fullmatch(name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:55] + "_" + digest


def _renamed(entry: Any, kinds: tuple[str, ...], names: dict[str, str]) -> Any:
    if (
        not isinstance(entry, dict)
        or entry.get("type") not in kinds
        or not isinstance(entry.get("name"), str)
    ):
        return entry
    up = upstream_tool_name(entry["name"])
    if up == entry["name"]:
        return entry
    names[up] = entry["name"]
    return {**entry, "name": up}


def shorten(body: dict[str, Any]) -> dict[str, str]:
    """Rename, in place, every tool name in an upstream Responses body that the backend would refuse."""
    names: dict[str, str] = {}
    if isinstance(body.get("tools"), list):
        body["tools"] = [_renamed(t, _NAMED_TOOLS, names) for t in body["tools"]]
    if isinstance(body.get("input"), list):
        body["input"] = [_renamed(item, _NAMED_CALLS, names) for item in body["input"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        choice = _renamed(choice, _NAMED_TOOLS, names)
        if isinstance(choice.get("tools"), list):
            choice = {**choice, "tools": [_renamed(t, _NAMED_TOOLS, names) for t in choice["tools"]]}
        body["tool_choice"] = choice
    return names


def restore(item: Any, names: dict[str, str]) -> Any:
    """An output item with the client's tool name (the item itself when nothing changes)."""
    if not names or not isinstance(item, dict) or item.get("type") not in _NAMED_CALLS:
        return item
    name = item.get("name")
    return {**item, "name": names[name]} if isinstance(name, str) and name in names else item
