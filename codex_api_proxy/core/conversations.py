"""Stored-state emulation for Responses clients: the items and turns the Codex backend does not keep.

The backend runs with `store: false`, so it cannot resolve an `item_reference` or a
`previous_response_id`; clients such as the Vercel AI SDK (`store: true` by default) rely on both.
This store keeps, per account and in memory, every output item the proxy relayed and every input item
with an id it sent (by id), and every finished turn (by response id: the input sent upstream plus the
output), so a later request can be expanded into the full conversation the backend needs. Like the
OpenAI API, a request with `store: false` (the Codex CLI's) is not kept: no copy of what a client
asked not to store, and no cost on the path that needs none.

Bounded three ways, to what a local tool should hold: entries (items + turns), bytes (the memory
what an entry holds takes, every object counted each time it is reached, so a turn counts its whole
history and the count never underestimates) and age (time since last use). Most clients store
nothing here (the Codex CLI sends `store: false`; Anthropic and chat clients have no stored state);
a client that chains `previous_response_id` needs its latest turn, rarely one an hour old.
The least recently used entry goes first; a reference to an evicted entry is a clear 400, never a
silent drop. Nothing here knows about HTTP: a future Responses WebSocket transport holds one
`Conversation` per socket, gives it as `ctx.options.conversation` for each `response.create` frame
(so `previous_response_id` expands as over HTTP) and calls `remember` after every turn itself, also
for `store: false` (the Codex CLI's incremental turns on one socket are store=false, and the OpenAI
API keeps a socket's previous response in connection-local memory).

Also here, because it is the same conversation identity: the `session-id`/`thread-id`/
`x-client-request-id` headers current Codex CLIs send, derived for clients that send none.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .options import STORE_MAX_BYTES_ENV, STORE_MAX_ITEMS_ENV, STORE_TTL_ENV

DEFAULT_MAX_ENTRIES = 5_000
DEFAULT_MAX_BYTES = 16 << 20
DEFAULT_TTL = 2 * 3600.0
ENTRY_OVERHEAD = 400  # bytes of bookkeeping per entry (its key, record and place in the order)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    value: Any
    size: int
    used: float


@dataclass(frozen=True)
class StoredTurn:
    """One finished response: what was sent upstream (already expanded) and what came back."""

    input: list[dict[str, Any]]
    output: list[dict[str, Any]]

    def history(self) -> list[dict[str, Any]]:
        return [*self.input, *self.output]


@dataclass
class ConversationStore:
    """The bounded, per-account store shared by every request of one proxy."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    max_bytes: int = DEFAULT_MAX_BYTES
    ttl: float = DEFAULT_TTL
    bytes_used: int = 0
    evicted: int = 0
    _entries: OrderedDict[tuple[str, str, str], _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> ConversationStore:
        """Limits from CODEX_API_PROXY_STORE_MAX_ITEMS / _MAX_BYTES / _TTL (seconds); a value that is
        not a positive number is reported and the default used, so a typo never stops the proxy."""

        def number(name: str, default: float) -> float:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = 0.0
            if value > 0:
                return value
            log.error("%s=%r is not a positive number; using %s", name, raw, default)
            return default

        return cls(
            max_entries=int(number(STORE_MAX_ITEMS_ENV, DEFAULT_MAX_ENTRIES)),
            max_bytes=int(number(STORE_MAX_BYTES_ENV, DEFAULT_MAX_BYTES)),
            ttl=number(STORE_TTL_ENV, DEFAULT_TTL),
        )

    def __len__(self) -> int:
        return len(self._entries)

    def figures(self) -> dict[str, int]:
        """What the store holds and may hold, for /health and `status`."""
        return {
            "entries": len(self._entries),
            "bytes": self.bytes_used,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "evicted": self.evicted,
        }

    def conversation(self, account: str | None) -> Conversation:
        """The view one request (or one socket) works through: everything scoped to its account."""
        return Conversation(self, account or "")

    def get(self, account: str, kind: str, key: str) -> Any:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._entries.get((account, kind, key))
            if entry is None:
                return None
            entry.used = now
            self._entries.move_to_end((account, kind, key))
            return entry.value

    def put(self, account: str, kind: str, key: str, value: Any, size: int) -> None:
        size += ENTRY_OVERHEAD
        if size > self.max_bytes:
            return  # larger than the whole store: keeping it would evict everything else
        now = time.monotonic()
        with self._lock:
            old = self._entries.pop((account, kind, key), None)
            if old is not None:
                self.bytes_used -= old.size
            self._entries[(account, kind, key)] = _Entry(value, size, now)
            self.bytes_used += size
            self._expire(now)
            while len(self._entries) > self.max_entries or self.bytes_used > self.max_bytes:
                self._pop_oldest()

    def _expire(self, now: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.used <= self.ttl:
                return
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        self.bytes_used -= entry.size
        self.evicted += 1


@dataclass
class Conversation:
    """One account's items and turns; `remember` once per finished response."""

    store: ConversationStore
    account: str

    def item(self, item_id: str) -> dict[str, Any] | None:
        return self.store.get(self.account, "item", item_id)

    def turn(self, response_id: str) -> StoredTurn | None:
        return self.store.get(self.account, "turn", response_id)

    def remember(
        self,
        response_id: str | None,
        sent: list[dict[str, Any]],
        output: list[Any],
        sent_items: Sequence[dict[str, Any]] = (),
    ) -> None:
        """A finished response: the turn (what was sent upstream, what came back) and, by id, every
        output item and every input item the client gave an id (`sent_items`, ids intact: the
        upstream copies lose theirs)."""
        items = [i for i in output if isinstance(i, dict)]
        for item in (*sent_items, *items):
            if isinstance(item.get("id"), str) and item["id"]:
                self.store.put(self.account, "item", item["id"], item, held_size(item))
        if response_id:
            size = held_size(sent) + held_size(items)
            self.store.put(self.account, "turn", response_id, StoredTurn(list(sent), items), size)


def held_size(value: Any) -> int:
    """Bytes of memory a JSON value holds: every list, dict and scalar in it (dict keys aside: short
    and shared), an object reached twice counted twice, so the bound is never underestimated. As fast
    as encoding it, and unlike its JSON length it counts what Python objects really cost (a short
    string takes ~50 bytes, not its length) and costs nothing for one huge string."""
    size, stack = 0, [value]
    while stack:
        v = stack.pop()
        size += sys.getsizeof(v)
        if type(v) is dict:
            stack.extend(v.values())
        elif type(v) is list or type(v) is tuple:
            stack.extend(v)
    return size


# -- conversation headers ------------------------------------------------------------------------------

SESSION_ID, THREAD_ID, REQUEST_ID = "session-id", "thread-id", "x-client-request-id"


def conversation_headers(forwarded: Mapping[str, str], prompt_cache_key: str | None) -> dict[str, str]:
    """The client headers going upstream, with the conversation ids in current Codex's spelling.

    Codex CLI >= 0.16x sends `session-id`, `thread-id` and `x-client-request-id` (= the thread id,
    codex-rs `build_conversation_headers`); the backend's cache affinity follows these ids, so they are
    the conversation's on every turn, whatever per-request id a client (Claude Code) put there. A client that sends none gets them derived from
    its `prompt_cache_key` (itself the client's session id or a fingerprint of the conversation's
    start), so every turn of one conversation carries the same ids. The old underscore `session_id`
    is read as the session id and not sent on.
    """
    out = {k: v for k, v in forwarded.items() if k != "session_id"}
    session = out.get(SESSION_ID) or forwarded.get("session_id") or prompt_cache_key
    if not session:
        return out
    out[SESSION_ID] = session
    out.setdefault(THREAD_ID, session)
    out[REQUEST_ID] = out[THREAD_ID]
    return out
