"""One `prompt_cache_key` per conversation, so every turn lands on the backend's prompt cache."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

# Headers clients use for a conversation id: the Codex CLI, ChatMock-style clients, Claude Code.
SESSION_HEADERS = ("session_id", "session-id", "x-session-id", "x-claude-code-session-id")


def item_text(item: Any) -> str:
    """The text of a message item, whatever its content shape (a string or a list of parts)."""
    if not isinstance(item, dict):
        return ""
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str))


def prompt_cache_key(
    headers: Mapping[str, str], items: list[dict[str, Any]], instructions: str | None = None
) -> str:
    """The client's session id, else a fingerprint of how the conversation starts: the instructions,
    the first developer message and the first user message stay the same from turn to turn."""
    for name in SESSION_HEADERS:
        if headers.get(name):
            return headers[name]

    def first(*roles: str) -> str:
        return item_text(next((i for i in items if isinstance(i, dict) and i.get("role") in roles), None))

    seed = "\x00".join((instructions or "", first("developer", "system"), first("user")))
    return "cxp-" + hashlib.sha256(seed.encode()).hexdigest()[:32]
