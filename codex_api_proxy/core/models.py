"""GET /v1/models: the account's model catalog, converted to the list shape both SDKs read, cached;
and the reasoning efforts each model accepts, from the same catalog."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Claude model names -> GPT models, by family (opus, sonnet, haiku; a claude name with no family counts
# as sonnet); the person's --model-map comes over it, and an exact name in it wins.
DEFAULT_MODEL_MAP = {"opus": "gpt-5.5", "sonnet": "gpt-5.5", "haiku": "gpt-5.4-mini"}
MODEL_FAMILIES = ("opus", "sonnet", "haiku")
_BRACKET_SUFFIX = re.compile(r"\[[^\[\]]*\]$")
CLIENT_VERSION = "0.169.0"  # the catalog filters models by minimal_client_version

# Every effort name clients send, weakest first. `ultra` is the Codex CLI's own level: it sends it as
# `max` (codex-rs client.rs), so it is never a wire value here either.
EFFORT_ORDER = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_ALIASES = {"ultra": "max"}
# What the backend's catalog says (`supported_reasoning_levels` of GET /models) for the models we know,
# used until the account's catalog has been fetched; `minimal` is refused by all of them.
_TO_XHIGH = ("low", "medium", "high", "xhigh")
KNOWN_LEVELS: dict[str, tuple[str, ...]] = {
    "gpt-5.4": _TO_XHIGH,
    "gpt-5.4-mini": _TO_XHIGH,
    "gpt-5.5": _TO_XHIGH,
    "gpt-5.6-sol": (*_TO_XHIGH, "max"),
    "gpt-5.6-terra": (*_TO_XHIGH, "max"),
    "gpt-5.6-luna": (*_TO_XHIGH, "max"),
}


def base_name(name: str) -> str:
    """A model name without Claude Code's bracket suffix (`claude-opus-4-5[1m]` -> `claude-opus-4-5`):
    the suffix only tells Claude Code the context window, so it routes like the base name."""
    return _BRACKET_SUFFIX.sub("", name).strip()


def map_model(name: str, model_map: dict[str, str] | None = None) -> str:
    """The upstream model for a client model name (see DEFAULT_MODEL_MAP)."""
    table = {**DEFAULT_MODEL_MAP, **(model_map or {})}
    name = base_name(name)
    if name in table:
        return table[name]
    lower = name.lower()
    if not lower.startswith("claude"):
        return name
    family = next((f for f in MODEL_FAMILIES if f in lower), "sonnet")
    return table[family]


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


# --- the Anthropic-shaped listing: Claude names the model map routes, for Claude Code's picker ------------

# The Claude names Claude Code offers or sends today (2.1.197 and 2.1.332), newest first per family.
CLAUDE_CODE_MODELS = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-4-8",
                      "claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5")  # fmt: skip
CLAUDE_CODE_DEFAULT_WINDOW = 200_000  # what Claude Code assumes for a model it does not know
CLAUDE_CODE_1M_WINDOW = 1_000_000  # what a `[1m]` suffix gives it


def wants_anthropic(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """An Anthropic client asks: the SDKs and Claude Code always send `anthropic-version`."""
    return "anthropic-version" in headers or query.get("format", "").lower() == "anthropic"


def _window_text(window: int) -> str:
    return f"{window // 1000_000}M" if window % 1000_000 == 0 else f"{round(window / 1000)}K"


def anthropic_entry(model_id: str, target: dict[str, Any] | None, upstream: str) -> dict[str, Any]:
    """A model object in the Anthropic shape (id, type, display_name, created_at) with the GPT model
    behind it named in `display_name` and `description` (what Claude Code's picker shows) and its
    context window as `max_input_tokens`."""
    gpt = (target or {}).get("display_name") or upstream
    window = (target or {}).get("context_window")
    entry: dict[str, Any] = {
        "type": "model",
        "id": model_id,
        "display_name": gpt if model_id == upstream else f"{model_id} → {gpt}",
        "created_at": "1970-01-01T00:00:00Z",
    }
    about = f"{gpt} ({upstream}) through codex-api-proxy"
    if isinstance(window, int):
        entry["display_name"] += f" ({_window_text(window)})"
        entry["max_input_tokens"] = window
        about += f", {_window_text(window)} context window"
    entry["description"] = about
    return entry


def claude_names(model_map: Mapping[str, str]) -> list[str]:
    """The Claude names to list: Claude Code's own, then exact claude/anthropic names in the map."""
    extra = [n for n in model_map if re.search(r"claude|anthropic", n, re.I) and n not in CLAUDE_CODE_MODELS]
    return [*CLAUDE_CODE_MODELS, *sorted(extra)]


def anthropic_listing(gpt_models: list[dict[str, Any]], model_map: Mapping[str, str]) -> dict[str, Any]:
    """The Claude names with the GPT model each routes to, then the GPT models themselves."""
    by_id = {m["id"]: m for m in gpt_models}
    data = []
    for name in claude_names(model_map):
        upstream = map_model(name, dict(model_map))
        data.append(anthropic_entry(name, by_id.get(upstream), upstream))
    data += [anthropic_entry(m["id"], m, m["id"]) for m in gpt_models]
    return listing(data)


def find_model(
    model_id: str, gpt_models: list[dict[str, Any]], model_map: Mapping[str, str], anthropic_shape: bool
) -> dict[str, Any] | None:
    """`GET /v1/models/{id}`: a GPT model by its id, or (Anthropic shape) any name the map routes,
    `[1m]`-style suffixes included; None when the id names nothing the proxy serves."""
    by_id = {m["id"]: m for m in gpt_models}
    if not anthropic_shape:
        return by_id.get(model_id)
    upstream = map_model(model_id, dict(model_map))
    if upstream not in by_id and base_name(model_id) == upstream:
        return None  # not a Claude name and not a GPT model of the account
    return anthropic_entry(model_id, by_id.get(upstream), upstream)


def claude_code_settings(model_map: Mapping[str, str], catalog: list[dict[str, Any]]) -> dict[str, str]:
    """Claude Code environment settings that match the real context windows of the mapped models.

    `catalog` is the model listing's data (entries with `id` and `context_window`). Claude Code
    assumes 200K for a Claude name (2.1.197 also for an unknown one, 2.1.332 1M for an unknown one
    such as `gpt-5.5`); a `[1m]` suffix lifts a Claude name to 1M and CLAUDE_CODE_AUTO_COMPACT_WINDOW
    can only lower the window. So a family whose GPT model has more than 200K gets the `[1m]` name, and
    the compaction window is the smallest real window among the mapped models (unless that is 1M or
    more), so compaction starts before any of them would refuse the prompt, whatever name is used."""
    windows = {m["id"]: m["context_window"] for m in catalog if isinstance(m.get("context_window"), int)}
    settings: dict[str, str] = {}
    used: list[int] = []
    for family, name in (("OPUS", "claude-opus-4-5"), ("SONNET", "claude-sonnet-4-5"),
                         ("HAIKU", "claude-haiku-4-5")):  # fmt: skip
        window = windows.get(map_model(name, dict(model_map)))
        if window is None:
            continue
        used.append(window)
        settings[f"ANTHROPIC_DEFAULT_{family}_MODEL"] = name + (
            "[1m]" if window > CLAUDE_CODE_DEFAULT_WINDOW else ""
        )
    if used and min(used) < CLAUDE_CODE_1M_WINDOW:
        settings["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] = str(min(used))
    return settings
