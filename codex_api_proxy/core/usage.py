"""What a person reads about their own traffic: recent requests, conversations and tokens over time.

`RequestMetrics` records every flow here when it counts it in the metrics (one place, one pass), and the
aggregate figures (tokens by model, requests, errors, latency) are read from the metrics registry
itself, so the usage page, the status line and `/metrics` never disagree. What is kept here is what a
counter cannot hold: the last requests one by one, each conversation's running totals and tokens per
minute. All of it is bounded (RECENT requests, CONVERSATIONS conversations, MINUTES buckets), holds
numbers, model names and conversation keys only (never prompt text), and lives in this process's
memory only: a restart starts from nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

RECENT = 200
CONVERSATIONS = 256
MINUTES = 180  # the chart's span: three hours of per-minute buckets
TOKEN_FIELDS = ("input", "cached", "output", "reasoning")  # as translate.accumulate.usage_of names them
MAX_KEY = 80  # characters of a conversation key kept (Claude Code's session id is 36)


@dataclass
class RequestRecord:
    """One finished request, as the recent-requests list shows it."""

    time: float
    api: str  # the client's API family (anthropic, chat, responses, compact, models, local, other)
    route: str
    model: str  # what the client asked for
    model_sent: str  # what went upstream
    status: int  # 0: the flow ended without a complete answer
    stream: bool
    ttfb_ms: float
    duration_ms: float
    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0
    error: str = ""
    conversation: str = ""


@dataclass
class Conversation:
    """One conversation's running totals (a Claude Code session, or a prompt_cache_key)."""

    key: str
    api: str
    model: str = ""
    model_sent: str = ""
    turns: int = 0
    errors: int = 0
    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    cache_miss: str = ""  # the latest reason the proxy logged for a missed prompt cache
    last_share: float | None = None  # cached share of the latest turn's input

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cached_share"] = round(self.cached / self.input, 4) if self.input else None
        return out


@dataclass
class UsageBook:
    """The bounded, in-memory record behind the usage page and the status line."""

    recent_size: int = RECENT
    conversations_size: int = CONVERSATIONS
    minutes: int = MINUTES
    recent: deque[RequestRecord] = field(init=False)
    conversations: OrderedDict[str, Conversation] = field(default_factory=OrderedDict)
    buckets: deque[tuple[int, dict[str, list[int]]]] = field(init=False)  # (minute, model -> tokens)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.recent_size)
        self.buckets = deque(maxlen=self.minutes)

    def record(self, rec: RequestRecord, label: str, cache_miss: str = "") -> None:
        """Called once per finished request (through Metrics.record), on the event loop; `label` is
        the model's label in the metrics' token counter, so the chart adds up to the same totals."""
        if rec.api != "local":  # probes and this page's own polls would push out the requests
            self.recent.append(rec)
        tokens = [getattr(rec, name) for name in TOKEN_FIELDS]
        if any(tokens):
            minute = int(rec.time // 60) * 60
            if not self.buckets or self.buckets[-1][0] != minute:
                self.buckets.append((minute, {}))
            per_model = self.buckets[-1][1].setdefault(label or "?", [0] * 4)
            for n, value in enumerate(tokens):
                per_model[n] += value
        if rec.conversation:
            self.note_turn(rec, cache_miss)

    def note_turn(self, rec: RequestRecord, cache_miss: str) -> None:
        key = rec.conversation[:MAX_KEY]
        conv = self.conversations.get(key)
        if conv is None:
            conv = self.conversations[key] = Conversation(key, rec.api, first_seen=rec.time)
            while len(self.conversations) > self.conversations_size:
                self.conversations.popitem(last=False)
        else:
            self.conversations.move_to_end(key)
        conv.turns += 1
        conv.errors += 0 if 200 <= rec.status < 400 else 1
        conv.model, conv.model_sent, conv.last_seen = rec.model, rec.model_sent or conv.model_sent, rec.time
        for name in TOKEN_FIELDS:
            setattr(conv, name, getattr(conv, name) + getattr(rec, name))
        if rec.input:
            conv.last_share = round(rec.cached / rec.input, 4)
        if cache_miss:
            conv.cache_miss = cache_miss

    def conversation(self, key: str) -> Conversation | None:
        return self.conversations.get(key[:MAX_KEY])

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "recent": [asdict(r) for r in reversed(self.recent)],
            "conversations": [c.as_json() for c in reversed(self.conversations.values())],
            "series": [
                {
                    "t": minute,
                    "models": {m: dict(zip(TOKEN_FIELDS, v, strict=True)) for m, v in models.items()},
                }
                for minute, models in self.buckets
                if minute >= now - self.minutes * 60
            ],
        }
