"""Every Anthropic block type Claude Code sends is translated, dropped for a logged reason, or refused
with a 400: tool search (`tool_reference`, deferred tools), server-tool traffic, unknown blocks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from codex_api_proxy.core.errors import ProxyError
from codex_api_proxy.translate.anthropic import to_upstream
from codex_api_proxy.translate.base import RequestContext

NOTEBOOK = {
    "name": "NotebookEdit",
    "description": "Edit a notebook cell.",
    "input_schema": {"type": "object", "properties": {"notebook_path": {"type": "string"}}},
    "defer_loading": True,
}
PLACEHOLDER = {"name": "DeferredToolPlaceholder", "description": "never call this tool",
               "input_schema": {"type": "object", "properties": {}}, "defer_loading": True}  # fmt: skip
SEARCH = {
    "name": "ToolSearch",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}


def translate(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = {"model": "claude-opus-4-5", "max_tokens": 100, "messages": messages, "tools": tools or [SEARCH]}
    return to_upstream(body, RequestContext(model=body["model"]))


def search_turns(result_content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "find the notebook tool"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "select:NotebookEdit"}},
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": result_content}]},
    ]  # fmt: skip


def test_deferred_tools_stay_hidden_until_a_tool_reference_loads_them() -> None:
    first = translate([{"role": "user", "content": "hi"}], [SEARCH, NOTEBOOK, PLACEHOLDER])
    assert [t["name"] for t in first["tools"]] == ["ToolSearch"]  # the placeholder is never callable
    after = translate(
        search_turns([{"type": "tool_reference", "tool_name": "NotebookEdit"}]),
        [SEARCH, NOTEBOOK, PLACEHOLDER],
    )
    assert [t["name"] for t in after["tools"]] == ["ToolSearch", "NotebookEdit"]


def test_tool_reference_becomes_the_definition_the_model_can_call() -> None:
    up = translate(
        search_turns([{"type": "tool_reference", "tool_name": "NotebookEdit"}]), [SEARCH, NOTEBOOK]
    )
    (output,) = [i["output"] for i in up["input"] if i.get("type") == "function_call_output"]
    assert output.startswith("<function>") and output.endswith("</function>")
    assert '"name": "NotebookEdit"' in output and "Edit a notebook cell." in output
    assert '"notebook_path"' in output


def test_tool_reference_to_a_tool_not_in_the_request_still_names_it() -> None:
    up = translate(
        search_turns(
            [{"type": "text", "text": "Found:"}, {"type": "tool_reference", "tool_name": "mcp__x__y"}]
        )
    )
    (output,) = [i["output"] for i in up["input"] if i.get("type") == "function_call_output"]
    assert output == 'Found:\n<function>{"name": "mcp__x__y"}</function>'


def test_server_side_tool_search_keeps_every_deferred_tool_visible() -> None:
    server = {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}
    up = translate([{"role": "user", "content": "hi"}], [server, NOTEBOOK])
    assert [t.get("name") for t in up["tools"]] == ["NotebookEdit"]


@pytest.mark.parametrize(
    ("role", "block"),
    [("user", {"type": "hologram", "data": "x"}), ("assistant", {"type": "hologram"}),
     ("user", {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "hologram"}]})],
)  # fmt: skip
def test_unknown_block_types_are_refused_not_dropped(role: str, block: dict[str, Any]) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {}}],
        },
        {"role": role, "content": [block]},
    ]
    with pytest.raises(ProxyError) as caught:
        translate(messages)
    assert caught.value.status == 400 and "'hologram' is not supported" in caught.value.message
    assert caught.value.param and caught.value.param.startswith("messages.2.content.0")


def test_dropped_blocks_are_logged_with_their_reason(caplog: pytest.LogCaptureFixture) -> None:
    messages = [
        {"role": "user", "content": "search the web"},
        {"role": "assistant", "content": [
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "Found it."},
        ]},
        {"role": "user", "content": "thanks"},
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, "codex_api_proxy"):
        up = translate(messages)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("redacted_thinking" in m and "only Anthropic can read it" in m for m in said)
    assert any("web_search_tool_result" in m and "citations carry the results" in m for m in said)
    assert [i.get("role") for i in up["input"]] == ["user", "assistant", "user"]
