"""Prompt-cache health: why a conversation's turn may not have hit the backend's prompt cache.

The backend caches a conversation's prompt by its exact prefix (instructions, then tools, then the
input items in order) under its prompt_cache_key and session header. Anything that changes that prefix
between turns, a moving system line, reordered tools, a rewritten earlier item, another session
header, silently re-bills the whole prompt. So per conversation (prompt_cache_key) each turn's prefix
is compared with the previous turn's (of the same thread: sub-agents share the key), by hashes of the instructions, each tool and each input item
(the new input must start with every earlier item), and one `cache_miss` line is logged at info
saying what changed; and when a turn's usage comes back with the cached share of its input fallen
although its prefix did not change, one `cache_miss` line says that. Only hashes and counts are kept
(CONVERSATIONS of them, the least recently seen dropped first) and logged: never text; the key itself
is logged as a short digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .headers import SESSION_HEADERS
from .jsonslices import SLICE, dumps_pieces

log = logging.getLogger(__name__)

CONVERSATIONS = 1024
THREADS = 8  # turn lines followed per key (the main conversation and its sub-agents)
SHARE_DROP = 0.25  # a fall of the cached share by this much (absolute) with an unchanged prefix is reported


def _digest(value: Any, large: bool = False) -> bytes:
    """The hash of a value's sorted JSON text (a string's own text); of a large request's values,
    the same hash made a slice at a time (jsonslices), so that no one call holds the GIL for long."""
    if not large:
        raw = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
        return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=12).digest()
    digest = hashlib.blake2b(digest_size=12)
    if isinstance(value, str):
        pieces = [value[start : start + SLICE] for start in range(0, len(value), SLICE)]
    else:
        pieces = dumps_pieces(value, sort_keys=True)
    for piece in pieces:
        digest.update(piece.encode("utf-8", "surrogatepass"))
    return digest.digest()


def _fields(value: Any, large: bool = False) -> dict[str, bytes]:
    """Per top-level field hashes of a tool or item, to name the field that changed."""
    return {str(k): _digest(v, large) for k, v in value.items()} if isinstance(value, dict) else {}


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        return str(tool.get("name") or tool.get("type") or "?")
    return "?"


def _field_change(before: dict[str, bytes], after: dict[str, bytes]) -> str:
    names = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return ", ".join(names) if names else "content"


@dataclass
class Prefix:
    """One turn's request, as hashes (tool names and field names are kept to say what changed; they
    are the client's identifiers, never its text)."""

    instructions: bytes
    tools: list[bytes]
    items: list[bytes]
    session: str | None
    tool_names: list[str] = field(default_factory=list)
    tool_fields: list[dict[str, bytes]] = field(default_factory=list)
    item_fields: list[dict[str, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, body: dict[str, Any], headers: dict[str, str], large: bool = False) -> Prefix:
        tools, items = _listed(body.get("tools")), _listed(body.get("input"))
        return cls(
            _digest(body.get("instructions") or "", large),
            [_digest(t, large) for t in tools],
            [_digest(i, large) for i in items],
            next((headers[h] for h in SESSION_HEADERS if headers.get(h)), None),
            [_tool_name(t) for t in tools],
            [_fields(t, large) for t in tools],
            [_fields(i, large) for i in items],
        )

    def tool_changes(self, before: Prefix) -> list[str]:
        """Which tools changed and where: added (at which position), removed, moved, or which field."""
        out: list[str] = []
        old = dict(zip(before.tool_names, before.tool_fields, strict=False))
        new = dict(zip(self.tool_names, self.tool_fields, strict=False))
        for n, name in enumerate(self.tool_names):
            if name not in old:
                where = (
                    "at the end" if n >= len(before.tool_names) else f"at position {n}, before earlier tools"
                )
                out.append(f"tool {name} added {where}")
            elif old[name] != new[name]:
                out.append(f"tool {name} changed ({_field_change(old[name], new[name])})")
        out += [f"tool {name} removed" for name in before.tool_names if name not in new]
        kept_before = [t for t in before.tool_names if t in new]
        kept_now = [t for t in self.tool_names if t in old]
        if kept_before != kept_now:
            out.append("tools reordered")
        return out or ["tools"]

    def changes_since(self, before: Prefix) -> list[str]:
        """What differs from the previous turn's prefix, in prompt order (empty: the prefix held)."""
        changed = []
        if self.instructions != before.instructions:
            changed.append("instructions")
        if self.tools != before.tools:
            changed += self.tool_changes(before)
        first = next(
            (n for n, (a, b) in enumerate(zip(before.items, self.items, strict=False)) if a != b), None
        )
        if first is not None:
            fields = (
                _field_change(before.item_fields[first], self.item_fields[first])
                if first < len(before.item_fields) and first < len(self.item_fields)
                else "content"
            )
            changed.append(f"item {first} ({fields})")
        elif len(self.items) < len(before.items):
            changed.append(f"item {len(self.items)} (history shortened)")
        if self.session != before.session:
            changed.append("session header")
        return changed


@dataclass
class Thread:
    """One line of turns under a key: Claude Code's sub-agents share the session's key with the main
    conversation but have their own instructions, tools and history, so each is followed on its own."""

    prefix: Prefix
    changed: list[str] = field(default_factory=list)  # what its latest turn changed
    share: float | None = None  # cached share of the input tokens of its latest finished turn
    miss: str = ""  # the reason its latest turn's `cache_miss` line gave (the usage page shows it)

    def likeness(self, prefix: Prefix) -> tuple[int, bool, bool]:
        """How much of `prefix` this thread's last turn shares: leading items, instructions, tools."""
        same = next(
            (n for n, (a, b) in enumerate(zip(self.prefix.items, prefix.items, strict=False)) if a != b),
            min(len(self.prefix.items), len(prefix.items)),
        )
        return same, self.prefix.instructions == prefix.instructions, self.prefix.tools == prefix.tools


@dataclass
class CacheHealth:
    """The per-conversation record; one per proxy (Runtime.cache_health)."""

    size: int = CONVERSATIONS
    threads: int = THREADS
    conversations: OrderedDict[str, list[Thread]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note_request(
        self, key: str | None, body: dict[str, Any], headers: dict[str, str], large: bool = False
    ) -> Thread | None:
        """A turn about to go upstream: log what changed in its prefix since the most similar earlier
        turn under its key; a turn that shares nothing with any of them starts a new thread. A large
        request (`large`, hashed in slices) is hashed off the event loop by the caller."""
        if not key:
            return None
        prefix = Prefix.of(body, headers, large)
        with self.lock:
            threads = self.conversations.setdefault(key, [])
            self.conversations.move_to_end(key)
            while len(self.conversations) > self.size:
                self.conversations.popitem(last=False)
            score, best = max(
                ((t.likeness(prefix), t) for t in threads), key=lambda st: st[0], default=(None, None)
            )
            if best is None or score == (0, False, False):
                best = Thread(prefix)
                threads.append(best)
                del threads[: -self.threads]
            else:
                best.changed, best.prefix = prefix.changes_since(best.prefix), prefix
        best.miss = f"{', '.join(best.changed)} changed since the previous turn" if best.changed else ""
        if best.changed:
            log.info("cache_miss conversation %s model %s: %s changed since the previous turn",
                     _short(key), body.get("model"), ", ".join(best.changed))  # fmt: skip
        return best

    def note_usage(self, thread: Thread | None, key: str, model: str, input_tokens: int, cached: int) -> None:
        """A turn's usage: log when its cached share fell although its prefix held."""
        if thread is None or input_tokens <= 0:
            return
        share = cached / input_tokens
        with self.lock:
            before, thread.share = thread.share, share
        if before is not None and not thread.changed and before - share >= SHARE_DROP:
            thread.miss = f"cached share fell from {before:.0%} to {share:.0%} with an unchanged prefix"
            log.info("cache_miss conversation %s model %s: cached share of input fell from %.0f%% to %.0f%% "
                     "with an unchanged prefix", _short(key), model, before * 100, share * 100)  # fmt: skip


def _listed(value: Any) -> list[Any]:
    """A list field as sent; any other shape (the translators refuse those) is no prefix at all."""
    return value if isinstance(value, list) else []


def _short(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:10]
