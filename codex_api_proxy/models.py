"""GET /v1/models: the account's model catalog, converted to the list shape both SDKs read, cached."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

CLIENT_VERSION = "0.169.0"  # the catalog filters models by minimal_client_version


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

    def get(self, key: str) -> dict[str, Any] | None:
        hit = self._entries.get(key)
        return hit[1] if hit and time.monotonic() - hit[0] < self.ttl else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.ttl > 0:
            self._entries[key] = (time.monotonic(), value)
