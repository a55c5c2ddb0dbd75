"""One `prompt_cache_key` per conversation, so every turn lands on the backend's prompt cache."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..core.jsonslices import SLICE

# Headers clients use for a conversation id: the Codex CLI, ChatMock-style clients, Claude Code.
SESSION_HEADERS = ("session_id", "session-id", "x-session-id", "x-claude-code-session-id")


def item_texts(item: Any) -> Iterator[str]:
    """The texts of a message item, whatever its content shape (a string or a list of parts)."""
    if not isinstance(item, dict):
        return
    content = item.get("content")
    if isinstance(content, str):
        yield content
        return
    yield from (p["text"] for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str))


def prompt_cache_key(
    headers: Mapping[str, str], items: list[dict[str, Any]], instructions: str | None = None
) -> str:
    """The client's session id, else a fingerprint of how the conversation starts: the instructions,
    the first developer message and the first user message stay the same from turn to turn."""
    for name in SESSION_HEADERS:
        if headers.get(name):
            return headers[name]

    def first(*roles: str) -> Iterator[str]:
        return item_texts(next((i for i in items if isinstance(i, dict) and i.get("role") in roles), None))

    # the hash of "\0".join((instructions, first developer text, first user text)), fed a slice at a
    # time: joining and encoding a pasted 60 MiB prompt would be two copies, each one call holding the
    # GIL (and so every other client's event loop) for tens of milliseconds
    seed = hashlib.sha256()
    for n, texts in enumerate(([instructions or ""], first("developer", "system"), first("user"))):
        if n:
            seed.update(b"\x00")
        for text in texts:
            for start in range(0, len(text), SLICE):
                seed.update(text[start : start + SLICE].encode())
    return "cxp-" + seed.hexdigest()[:32]
