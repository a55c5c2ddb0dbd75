"""Any legal order of Responses events -> one canonical order that every translator can follow.

The backend's streams are not all shaped like our fake's. Parallel calls interleave (call B is
announced before call A's arguments are done, A finishes after B); a function call may be announced
with an empty name that only its `output_item.done` carries; events may come without `output_index`
or `sequence_number`; an answer's text may only be in its `output_item.done`. Each translator's
client protocol is sequential (Anthropic: one open content block at a time; Chat: a call's index and
name fixed at its first delta; the openai SDK: items by `output_index`, parts announced before their
deltas), so the stream is put in that shape once, here, before any family sees it:

- Items are identified by whichever of `item_id` / `item.id` / `output_index` / `call_id` an event
  carries (an event with none belongs to the newest unfinished item) and renumbered 0, 1, 2... in the
  order they first appear; every item event gets that `output_index`.
- One item at a time: the events of the first unfinished item pass at once (so text still streams as
  it arrives); a later item's events wait behind it and go out whole, in order, when it is done.
- A call announced without a name waits until a name is known (its `done`), then goes out with it.
- An item that never had an `output_item.added` goes out as added (its done item emptied) + done, so
  the deltas that came without an announcement are not needed (text or reasoning deltas without an
  announcement announce their item at once as what they say it is); a content or summary part that was never
  announced gets its `.added` before its first delta.

What is held is only what must wait; nothing is dropped but deltas the done item repeats in full.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_CALLS = ("function_call", "custom_tool_call")
_RESPONSE_LEVEL = ("response.created", "response.in_progress", "response.queued")
_ENDINGS = ("response.completed", "response.incomplete", "response.failed", "error")
_TEXT_DELTAS = ("response.output_text.delta", "response.refusal.delta")
_ANNOUNCING_DELTAS = (*_TEXT_DELTAS, "response.reasoning_summary_text.delta")
# deltas whose shaping only checks that their part was announced: with the stream already in
# canonical order they pass as they are (feed's common path); the part key each one needs
_PLAIN_DELTAS = {
    "response.output_text.delta": ("content", "content_index"),
    "response.refusal.delta": ("content", "content_index"),
    "response.reasoning_summary_text.delta": ("summary", "summary_index"),
    "response.function_call_arguments.delta": None,
    "response.custom_tool_call_input.delta": None,
    "response.reasoning_text.delta": None,
}


@dataclass
class _Item:
    index: int
    announced: bool = False  # an output_item.added came for it
    done: bool = False
    kind: str | None = None
    waiting_name: bool = False  # a call announced with an empty name, held until its name is known
    held: list[dict[str, Any]] = field(default_factory=list)
    parts: set[Any] = field(default_factory=set)  # content / summary indices announced to the client


def _aliases(data: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    item = data.get("item")
    if isinstance(item, dict):
        if isinstance(item.get("id"), str) and item["id"]:
            out.append(("id", item["id"]))
        if isinstance(item.get("call_id"), str) and item["call_id"]:
            out.append(("call", item["call_id"]))
    if isinstance(data.get("item_id"), str) and data["item_id"]:
        out.append(("id", data["item_id"]))
    if isinstance(data.get("call_id"), str) and data["call_id"]:
        out.append(("call", data["call_id"]))
    if isinstance(data.get("output_index"), int) and not isinstance(data["output_index"], bool):
        out.append(("index", data["output_index"]))
    return out


def _is_item_event(kind: str, data: dict[str, Any]) -> bool:
    if kind in _RESPONSE_LEVEL or not kind.startswith("response."):
        return False
    return bool(_aliases(data)) or kind.startswith(
        ("response.output_", "response.content_part.", "response.reasoning", "response.function_call")
    )


def _skeleton(item: dict[str, Any]) -> dict[str, Any]:
    """A done item as its `added` would have shown it: no content yet."""
    out = {**item, "status": "in_progress"}
    kind = item.get("type")
    if kind == "message":
        out["content"] = []
    elif kind == "function_call":
        out["arguments"] = ""
    elif kind == "custom_tool_call":
        out["input"] = ""
    elif kind == "reasoning":
        out["summary"] = []
    return out


class EventOrder:
    """Feed parsed upstream events one by one; each call returns the events to pass on now."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, Any], _Item] = {}
        self._queue: list[_Item] = []  # unfinished or not yet fully passed on, in order of first sight
        self._count = 0

    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        if self._in_order(data):
            return [data]
        kind = str(data.get("type") or "")
        if not _is_item_event(kind, data):
            if kind in _ENDINGS:
                return [*self.flush(), data]  # everything before the end goes out first
            return [data]
        item = self._item(kind, data)
        item.held += self._shaped(item, kind, data)
        if not (item.announced or item.done) and kind in _ANNOUNCING_DELTAS:
            item.held = self._announce_late(item)  # text without an announcement: what it is is clear
        return self._pump()

    def _in_order(self, data: dict[str, Any]) -> bool:
        """A delta of the item now streaming, already numbered and with its part announced: what the full
        path would pass on unchanged, found without it (most events of an answer are these; the full
        path costs several µs per event)."""
        kind = data.get("type")
        if kind not in _PLAIN_DELTAS or not self._queue or "item" in data or "call_id" in data:
            return False
        head = self._queue[0]
        if head.held or head.done or head.waiting_name or not head.announced:
            return False
        item_id, index = data.get("item_id"), data.get("output_index")
        if not item_id or not isinstance(item_id, str) or self._items.get(("id", item_id)) is not head:
            return False
        if type(index) is not int or index != head.index or ("index", index) not in self._items:
            return False
        part = _PLAIN_DELTAS[kind]
        return part is None or (part[1] in data and (part[0], data[part[1]]) in head.parts)

    def flush(self) -> list[dict[str, Any]]:
        """Everything still held, in order (the stream is ending)."""
        out: list[dict[str, Any]] = []
        for item in self._queue:
            if not item.announced and not item.done:
                out += self._announce_late(item)
            out += item.held
            item.held = []
        self._queue = []
        return out

    def _announce_late(self, item: _Item) -> list[dict[str, Any]]:
        """An item whose deltas came without an `added` (at its first text delta, or at the stream's end):
        announced as what its deltas say it is, so its text is not lost. Arguments of a call nobody named are dropped:
        a call without a name cannot be answered."""
        kinds = {e.get("type") for e in item.held}
        if kinds & {*_TEXT_DELTAS, "response.output_text.annotation.added"}:
            body: dict[str, Any] = {
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
        elif "response.reasoning_summary_text.delta" in kinds:
            body = {"type": "reasoning", "summary": []}
        else:
            if item.held:
                log.warning("dropped %d events of an output item that never said what it is", len(item.held))
            item.held = []
            return []
        item_id = next((e["item_id"] for e in item.held if isinstance(e.get("item_id"), str)), None)
        if item_id:
            body["id"] = item_id
        held, item.held = item.held, []
        item.announced, item.kind = True, body["type"]
        out = [{"type": "response.output_item.added", "output_index": item.index, "item": body}]
        for event in held:
            out += self._shaped(item, str(event.get("type")), event)
        return out

    # ---------------------------------------------------------------------------------------------

    def _item(self, kind: str, data: dict[str, Any]) -> _Item:
        aliases = _aliases(data)
        item = next((self._items[a] for a in aliases if a in self._items), None)
        if item is None and not aliases:
            done_item = data.get("item") if isinstance(data.get("item"), dict) else None
            wanted = done_item.get("type") if done_item else None
            open_items = [
                i for i in self._queue if not i.done and (wanted is None or i.kind in (None, wanted))
            ]
            if open_items and kind != "response.output_item.added":
                item = open_items[-1]
        if item is None:
            item = _Item(self._count)
            self._count += 1
            self._queue.append(item)
        for alias in aliases:
            self._items.setdefault(alias, item)
        return item

    def _shaped(self, item: _Item, kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The event with the canonical index, plus what the client needs before it."""
        event = data if data.get("output_index") == item.index else {**data, "output_index": item.index}
        body = data.get("item") if isinstance(data.get("item"), dict) else None
        if kind == "response.output_item.added" and body is not None:
            item.announced, item.kind = True, body.get("type")
            item.waiting_name = item.kind in _CALLS and not body.get("name")
            return [event]
        if kind == "response.output_item.done" and body is not None:
            item.done, item.kind = True, body.get("type")
            if not item.announced:  # never announced: added + done; its loose deltas are in the item
                item.held = [e for e in item.held if e.get("type") == "response.output_item.added"]
                added = {"type": "response.output_item.added", "output_index": item.index}
                return [{**added, "item": _skeleton(body)}, event]
            if item.waiting_name:
                item.waiting_name = False
                for held in item.held:
                    if held.get("type") == "response.output_item.added":
                        held["item"] = {**held["item"], "name": body.get("name") or ""}
            return [event]
        out: list[dict[str, Any]] = []
        if kind in _TEXT_DELTAS or kind == "response.output_text.annotation.added":
            part = ("content", data.get("content_index", 0))
            if part not in item.parts and item.announced:
                item.parts.add(part)
                kind_of = "refusal" if kind == "response.refusal.delta" else "output_text"
                blank = {"type": kind_of, kind_of if kind_of == "refusal" else "text": ""}
                if kind_of == "output_text":
                    blank["annotations"] = []
                out.append(
                    {
                        "type": "response.content_part.added",
                        "item_id": data.get("item_id"),
                        "output_index": item.index,
                        "content_index": part[1],
                        "part": blank,
                    }
                )
            if "content_index" not in event:
                event = {**event, "content_index": part[1]}
        elif kind == "response.content_part.added":
            item.parts.add(("content", data.get("content_index", 0)))
        elif kind == "response.reasoning_summary_part.added":
            item.parts.add(("summary", data.get("summary_index", 0)))
        elif kind == "response.reasoning_summary_text.delta":
            part = ("summary", data.get("summary_index", 0))
            if part not in item.parts and item.announced:
                item.parts.add(part)
                out.append(
                    {
                        "type": "response.reasoning_summary_part.added",
                        "item_id": data.get("item_id"),
                        "output_index": item.index,
                        "summary_index": part[1],
                        "part": {"type": "summary_text", "text": ""},
                    }
                )
        return [*out, event]

    def _pump(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self._queue:
            head = self._queue[0]
            if head.waiting_name or not (head.announced or head.done):
                break  # its name (or its announcement) is still to come
            out += head.held
            head.held = []
            if not head.done:
                break
            self._queue.pop(0)
        return out
