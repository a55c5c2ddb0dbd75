"""GET /v1/models: the account's model catalog, converted to the list shape both SDKs read, cached;
and the reasoning efforts each model accepts, from the same catalog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CLIENT_VERSION = "0.169.0"  # the catalog filters models by minimal_client_version

# Every effort name clients send, weakest first. `ultra` is the Codex CLI's own level: it sends it as
# `max` (codex-rs client.rs), so it is never a wire value here either.
EFFORT_ORDER = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_ALIASES = {"ultra": "max"}
# What the catalog says (`supported_reasoning_levels`, reference/peers-2026-12.md §3.6) for the models we
# know, used until the account's catalog has been fetched; `minimal` is refused by all of them.
_TO_XHIGH = ("low", "medium", "high", "xhigh")
KNOWN_LEVELS: dict[str, tuple[str, ...]] = {
    "gpt-5.4": _TO_XHIGH,
    "gpt-5.4-mini": _TO_XHIGH,
    "gpt-5.5": _TO_XHIGH,
    "gpt-5.6-sol": (*_TO_XHIGH, "max"),
    "gpt-5.6-terra": (*_TO_XHIGH, "max"),
    "gpt-5.6-luna": (*_TO_XHIGH, "max"),
}


def clamp_effort(levels: Sequence[str], wanted: str) -> str:
    """`wanted` if the model supports it, else the strongest supported level below it, else the
    weakest supported one (a client's `minimal` becomes `low`). Unknown names pass unchanged: the
    backend's own 400 explains those better than a guess."""
    wanted = _ALIASES.get(wanted, wanted)
    supported = [e for e in EFFORT_ORDER if e in {_ALIASES.get(x, x) for x in levels}]
    if wanted in supported or wanted not in EFFORT_ORDER or not supported:
        return wanted
    rank = EFFORT_ORDER.index(wanted)
    below = [e for e in supported if EFFORT_ORDER.index(e) < rank]
    return below[-1] if below else supported[0]


def clamp_body_effort(body: dict[str, Any], levels: Sequence[str] | None) -> None:
    """Any upstream body's `reasoning.effort`, clamped in place to the model's levels (when known)."""
    reasoning = body.get("reasoning")
    if levels and isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        reasoning["effort"] = clamp_effort(levels, reasoning["effort"])


def catalog_levels(payload: Any) -> dict[str, tuple[str, ...]]:
    """slug -> supported effort names, from a Codex catalog (`supported_reasoning_levels`)."""
    out: dict[str, tuple[str, ...]] = {}
    for m in (payload.get("models") if isinstance(payload, dict) else None) or []:
        if not isinstance(m, dict) or not isinstance(m.get("slug"), str):
            continue
        levels = [
            lv.get("effort") if isinstance(lv, dict) else lv
            for lv in m.get("supported_reasoning_levels") or []
        ]
        if any(isinstance(e, str) for e in levels):
            out[m["slug"]] = tuple(e for e in levels if isinstance(e, str))
    return out


def from_codex_catalog(payload: Any) -> list[dict[str, Any]]:
    """Codex catalog -> visible models, by catalog priority. Each entry carries the OpenAI fields and
    the Anthropic ones (`type`, `display_name`, `created_at`), so either SDK can list them."""
    models = payload.get("models") if isinstance(payload, dict) else None
    entries = [
        m
        for m in models or []
        if isinstance(m, dict)
        and isinstance(m.get("slug"), str)
        and m.get("visibility", "list") == "list"
        and m.get("supported_in_api") is not False
    ]
    entries.sort(key=lambda m: (m.get("priority", 1_000), m["slug"]))
    return [
        model_entry(m["slug"], m.get("display_name") or m["slug"], m.get("context_window")) for m in entries
    ]


def model_entry(model_id: str, display_name: str | None = None, context_window: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "openai",
        "type": "model",
        "display_name": display_name or model_id,
        "created_at": "1970-01-01T00:00:00Z",
    }
    if isinstance(context_window, int):
        entry["context_window"] = context_window
    return entry


def listing(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@dataclass
class ModelCache:
    """One cached listing per account, refreshed by a single caller at a time."""

    ttl: float
    _entries: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _levels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # from the last catalog seen

    def learn_levels(self, catalog: Any) -> None:
        self._levels.update(catalog_levels(catalog))

    def reasoning_levels(self, model: Any) -> tuple[str, ...] | None:
        """The model's effort levels: from a fetched catalog, else the built-in table, else None."""
        if not isinstance(model, str):
            return None
        return self._levels.get(model) or KNOWN_LEVELS.get(model)

    def get(self, key: str) -> dict[str, Any] | None:
        hit = self._entries.get(key)
        return hit[1] if hit and time.monotonic() - hit[0] < self.ttl else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.ttl > 0:
            self._entries[key] = (time.monotonic(), value)
