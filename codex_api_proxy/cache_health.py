"""Prompt-cache health: why a conversation's turn may not have hit the backend's prompt cache.

The backend caches a conversation's prompt by its exact prefix (instructions, then tools, then the
input items in order) under its prompt_cache_key and session header. Anything that changes that prefix
between turns, a moving system line, reordered tools, a rewritten earlier item, another session
header, silently re-bills the whole prompt. So per conversation (prompt_cache_key) each turn's prefix
is compared with the previous turn's, by hashes of the instructions, each tool and each input item
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

log = logging.getLogger(__name__)

CONVERSATIONS = 1024
SHARE_DROP = 0.25  # a fall of the cached share by this much (absolute) with an unchanged prefix is reported
SESSION_HEADERS = ("session_id", "session-id")  # what the gateway sends upstream


def _digest(value: Any) -> bytes:
    raw = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=12).digest()


@dataclass
class Prefix:
    """One turn's request, as hashes."""

    instructions: bytes
    tools: list[bytes]
    items: list[bytes]
    session: str | None

    @classmethod
    def of(cls, body: dict[str, Any], headers: dict[str, str]) -> Prefix:
        return cls(
            _digest(body.get("instructions") or ""),
            [_digest(t) for t in body.get("tools") or []],
            [_digest(i) for i in body.get("input") or []],
            next((headers[h] for h in SESSION_HEADERS if headers.get(h)), None),
        )

    def changes_since(self, before: Prefix) -> list[str]:
        """What differs from the previous turn's prefix, in prompt order (empty: the prefix held)."""
        changed = []
        if self.instructions != before.instructions:
            changed.append("instructions")
        if self.tools != before.tools:
            changed.append("tools")
        first = next(
            (n for n, (a, b) in enumerate(zip(before.items, self.items, strict=False)) if a != b), None
        )
        if first is not None:
            changed.append(f"item {first}")
        elif len(self.items) < len(before.items):
            changed.append(f"item {len(self.items)} (history shortened)")
        if self.session != before.session:
            changed.append("session header")
        return changed


@dataclass
class _Conversation:
    prefix: Prefix
    share: float | None = None  # cached share of the input tokens of its latest finished turn


@dataclass
class CacheHealth:
    """The per-conversation record; one per proxy process (HEALTH)."""

    size: int = CONVERSATIONS
    conversations: OrderedDict[str, _Conversation] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note_request(self, key: str | None, body: dict[str, Any], headers: dict[str, str]) -> list[str]:
        """A turn about to go upstream: log what changed in its prefix; returns the changes."""
        if not key:
            return []
        prefix = Prefix.of(body, headers)
        with self.lock:
            known = self.conversations.get(key)
            self.conversations[key] = _Conversation(prefix, known.share if known else None)
            self.conversations.move_to_end(key)
            while len(self.conversations) > self.size:
                self.conversations.popitem(last=False)
        changed = prefix.changes_since(known.prefix) if known else []
        if changed:
            log.info("cache_miss conversation %s model %s: %s changed since the previous turn",
                     _short(key), body.get("model"), ", ".join(changed))  # fmt: skip
        return changed

    def note_usage(
        self, key: str | None, model: str, input_tokens: int, cached: int, prefix_changed: bool
    ) -> None:
        """A turn's usage: log when its cached share fell although its prefix held."""
        if not key or input_tokens <= 0:
            return
        share = cached / input_tokens
        with self.lock:
            known = self.conversations.get(key)
            before = known.share if known else None
            if known:
                known.share = share
        if before is not None and not prefix_changed and before - share >= SHARE_DROP:
            log.info("cache_miss conversation %s model %s: cached share of input fell from %.0f%% to %.0f%% "
                     "with an unchanged prefix", _short(key), model, before * 100, share * 100)  # fmt: skip


def _short(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:10]


HEALTH = CacheHealth()
