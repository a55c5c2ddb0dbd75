"""Tools keep their upstream order per conversation, so a tool loaded later costs no cached prompt.

Unit level, on a recorded Claude Code request (tests/fixtures): the real session through the real
Claude Code is in test_claude_code_e2e.py (test_a_tool_loaded_later_keeps_every_earlier_prompt_token).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from codex_api_proxy.translate import anthropic, chat, responses
from codex_api_proxy.translate.base import RequestContext, TranslatorOptions
from codex_api_proxy.translate.tool_order import ToolOrder

FIXTURES = Path(__file__).parent / "fixtures"
DEFERRED = ("CronCreate", "NotebookEdit")


def claude_code_turns() -> tuple[dict[str, Any], dict[str, Any]]:
    """A recorded first turn without two deferred tools, and its next turn once they were loaded: the
    client inserts them at their alphabetical places."""
    body = json.loads((FIXTURES / "cc_messages_first_turn_gpt55.json").read_text())["body"]
    first = copy.deepcopy(body)
    first["tools"] = [t for t in body["tools"] if t["name"] not in DEFERRED]
    second = copy.deepcopy(body)
    second["messages"] += [
        {"role": "assistant", "content": [{"type": "text", "text": "Loading them."}]},
        {"role": "user", "content": [{"type": "text", "text": "go on"}]},
    ]
    return first, second


def upstream(body: dict[str, Any], order: ToolOrder) -> dict[str, Any]:
    ctx = RequestContext(
        headers={"x-claude-code-session-id": "s-1"}, options=TranslatorOptions(tool_order=order)
    )
    return anthropic.to_upstream(copy.deepcopy(body), ctx)


def test_a_loaded_tool_is_appended_and_the_earlier_prefix_is_byte_identical() -> None:
    order = ToolOrder()
    first_body, second_body = claude_code_turns()
    first, second = upstream(first_body, order), upstream(second_body, order)
    names = [t["name"] for t in second["tools"]]
    assert names[-2:] == list(DEFERRED)
    assert [t["name"] for t in second_body["tools"]].index("NotebookEdit") < len(names) - 1  # client: middle
    before = json.dumps(first["tools"])[:-1]
    assert json.dumps(second["tools"]).startswith(before)  # every earlier tool token unchanged
    assert second["instructions"] == first["instructions"]
    assert json.dumps(second["input"]).startswith(json.dumps(first["input"])[:-1])
    # the same turn again renders byte-identically
    assert json.dumps(upstream(second_body, order)) == json.dumps(second)


def test_without_the_shared_order_the_client_order_is_kept() -> None:
    first_body, _ = claude_code_turns()
    ctx = RequestContext(headers={"x-claude-code-session-id": "s-1"})
    out = anthropic.to_upstream(first_body, ctx)
    assert [t["name"] for t in out["tools"]] == [t["name"] for t in first_body["tools"]]


def test_order_is_per_conversation_and_bounded() -> None:
    order = ToolOrder(capacity=2)
    a, b, c = ({"type": "function", "name": n} for n in "abc")
    assert order.arrange("k1", [b, c]) == [b, c]
    assert order.arrange("k1", [a, b, c]) == [b, c, a]
    assert order.arrange("k2", [a, b]) == [a, b]  # another conversation: its own order
    assert order.arrange("k1", [a, c]) == [c, a]  # a removed tool leaves the rest in their order
    assert order.arrange("k1", [c, b]) == [b, c]  # a sub-agent's subset: in the key's order
    assert order.arrange("k1", [a, b, c]) == [b, c, a]  # and the main conversation's order is unchanged
    order.arrange("k3", [c])
    order.arrange("k4", [c])
    assert order.arrange("k1", [a, b, c]) == [a, b, c]  # k1 was evicted: the client's order again


def test_chat_and_responses_routes_keep_the_order_too() -> None:
    order = ToolOrder()
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in "bc"]
    body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "prompt_cache_key": "k"}
    chat.to_upstream({**body, "tools": tools}, RequestContext(options=TranslatorOptions(tool_order=order)))
    later = [tools[0], {"type": "function", "function": {"name": "a"}}, tools[1]]
    out = chat.to_upstream(
        {**body, "tools": later}, RequestContext(options=TranslatorOptions(tool_order=order))
    )
    assert [t["name"] for t in out["tools"]] == ["b", "c", "a"]
    rbody = {"model": "gpt-5.5", "input": "hi", "prompt_cache_key": "r", "store": False}
    rtools = [{"type": "function", "name": n} for n in "bc"]
    responses.to_upstream(
        {**rbody, "tools": rtools}, RequestContext(options=TranslatorOptions(tool_order=order))
    )
    out = responses.to_upstream(
        {**rbody, "tools": [{"type": "function", "name": "a"}, *rtools]},
        RequestContext(options=TranslatorOptions(tool_order=order)),
    )
    assert [t["name"] for t in out["tools"]] == ["b", "c", "a"]
