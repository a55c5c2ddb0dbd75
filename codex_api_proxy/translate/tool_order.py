"""Tools in the order the conversation's earlier turns sent them, so a tool loaded later costs no
cached prompt.

The backend caches a prompt by its prefix, and `tools` is rendered before the conversation. Claude
Code's tool search adds a deferred tool to `tools` at its alphabetical position once loaded; sent
there, every tool after it and the whole history would miss the cache on that turn. So, per
conversation (`prompt_cache_key`), the tools already sent keep their upstream order and new ones are
appended at the end: the earlier prompt tokens stay as they were. The order is every tool ever sent
under the key, by first appearance, so a sub-agent sharing the key with other tools, or a turn that
drops one, moves nothing for the others. One shared `ToolOrder` (on the
Runtime, given to translators as `ctx.options.tool_order`) remembers a bounded number of
conversations, least recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

TOOLS_PER_CONVERSATION = 2048  # tool ids remembered per conversation, the oldest forgotten first


def tool_id(tool: Any) -> str:
    if isinstance(tool, dict):
        return f"{tool.get('type')}:{tool.get('name') or ''}"
    return repr(tool)


class ToolOrder:
    """Per-conversation order of the tools sent upstream (bounded LRU)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._orders: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def arrange(self, key: str | None, tools: list[Any]) -> list[Any]:
        """`tools` with the ones this conversation sent before first, in their earlier order, and the
        new ones after them in the client's order; remembers the result."""
        if not key:
            return tools
        by_id = {tool_id(t): t for t in tools}
        with self._lock:
            known = self._orders.pop(key, [])
            seen = set(known)
            new = [i for i in by_id if i not in seen]
            order = [i for i in known if i in by_id] + new
            # every tool ever sent under the key keeps its place: a sub-agent sharing the key with a
            # subset of the tools (or a turn without some) does not reorder the main conversation's
            self._orders[key] = (known + new)[-TOOLS_PER_CONVERSATION:]
            while len(self._orders) > self.capacity:
                self._orders.popitem(last=False)
        return [by_id[i] for i in order] if len(by_id) == len(tools) else tools


def arrange(body: dict[str, Any], order: ToolOrder | None) -> None:
    """Reorder `body["tools"]` in place by the conversation's earlier turns (when a ToolOrder is given)."""
    if order is not None and isinstance(body.get("tools"), list) and body["tools"]:
        body["tools"] = order.arrange(body.get("prompt_cache_key"), body["tools"])
