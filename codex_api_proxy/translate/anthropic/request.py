"""Anthropic Messages request -> Codex Responses request: models, effort, tools and their schemas,
messages and their blocks.

Choices a reader needs (each one is tested in tests/test_anthropic_translate.py):

- Models: `claude-*` names map by family (opus, sonnet, haiku; a claude name with no family counts as
  sonnet) through `ctx.options.model_map` over DEFAULT_MODEL_MAP (core/models.map_model); an exact name in the map wins;
  other names pass through; a bracket suffix (`[1m]`) is ignored. Responses echo the name the client
  asked for (`ctx.model`).
- Reasoning effort: `output_config.effort` wins (EFFORT_BY_NAME: low..max as themselves). Otherwise
  `thinking.enabled` budgets below 4,096 -> low, below 16,384 -> medium, else high; `adaptive` -> high;
  disabled or absent -> low, the lowest level every Codex model accepts (none/minimal are refused by
  some). Thinking blocks (reasoning.summary "auto" + encrypted reasoning) only when thinking is enabled
  or adaptive: an Anthropic client that did not ask for thinking never gets thinking blocks.
- Thinking blocks the client echoes are restored as the reasoning items they came from (see
  anthropic_signature), so GPT keeps its reasoning across tool calls. Signatures the proxy did not
  issue (a real Anthropic model's), ours from another upstream model, and `redacted_thinking` blocks
  are dropped.
- Tool results: one `function_call_output` per tool_result, all of a user turn's outputs first (the
  backend wants them right after the calls, and Anthropic itself requires tool_results to lead the
  message), then one user message with the turn's other blocks in their order. `is_error: true` is
  shown to the model as an "Error: " prefix (unless the text already starts with "error"). A result
  with images or documents is sent as a list of input_text/input_image/input_file parts: the shape Codex
  CLI itself sends for its view_image tool, which keeps the image attached to its call.
- Tool names that are not `[A-Za-z0-9_-]{1,64}` are sent as sanitised prefix + "_" + 8 hex of their
  sha1 (deterministic); `ctx.state.tool_names` maps them back. Schemas lose $schema/$id/$comment,
  null types and regex patterns Python's `re` rejects (the OpenAI validator's "is not a 'regex'"),
  and top-level combinators (their properties are merged); no `strict`. Anthropic `web_search_*` server
  tools become {"type": "web_search"} (its answer: anthropic_web_search); other server tools are
  dropped with a warning.
- Tool search: `defer_loading` tools are sent once a `tool_reference` (Claude Code's ToolSearch result)
  has loaded them; the reference itself reads to the model as the tool's <function> definition.
- Blocks: every type is translated, dropped for a reason logged at info (_DROPPED_BLOCKS: redacted
  reasoning, server-tool traffic the backend does not replay), or refused with a 400.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import bad_request
from ...core.models import map_model
from .. import tool_order, upstream_policy
from ..base import RequestContext, client_errors
from ..cache_key import prompt_cache_key
from ..tool_names import upstream_tool_name
from .signature import decode_signature

log = logging.getLogger(__name__)

# GPT's effort scale, lowest first; each Claude level (low..max) is its namesake on it, none collapsed:
# the clamp to what the target model's catalog entry accepts happens after translation, for every family.
GPT_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
EFFORT_BY_NAME = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}
BUDGET_EFFORT = ((4096, "low"), (16384, "medium"))  # budget_tokens below the limit -> effort; else high
ADAPTIVE_EFFORT = "high"
THINKING_OFF_EFFORT = "low"
BILLING_PREFIX = "x-anthropic-billing-header:"
ERROR_PREFIX = "Error: "

_SCHEMA_DROP = frozenset({"$schema", "$id", "$comment"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_ONE = frozenset({"items", "additionalItems", "additionalProperties", "not", "contains",
                        "propertyNames", "if", "then", "else", "unevaluatedProperties",
                        "unevaluatedItems"})  # fmt: skip
_TOP_LEVEL_FORBIDDEN = ("anyOf", "oneOf", "allOf", "not", "enum")
# Blocks with no Responses equivalent, dropped (logged at info) for the reason given; any other block
# type the translator does not know is refused with a 400, so nothing the model should see vanishes.
_SERVER_RAN = "a server tool's own traffic: the backend does not replay it"
_DROPPED_BLOCKS = {
    "redacted_thinking": "reasoning Anthropic encrypted: only Anthropic can read it",
    "server_tool_use": _SERVER_RAN,
    "web_search_tool_result": _SERVER_RAN + " (the answer's text and citations carry the results)",
    "web_fetch_tool_result": _SERVER_RAN,
    "code_execution_tool_result": _SERVER_RAN,
    "bash_code_execution_tool_result": _SERVER_RAN,
    "text_editor_code_execution_tool_result": _SERVER_RAN,
    "tool_search_tool_result": _SERVER_RAN,
    "mcp_tool_use": _SERVER_RAN,
    "mcp_tool_result": _SERVER_RAN,
    "container_upload": "a file for Anthropic's code-execution container, which the backend does not have",
}
_USER_DROPPED = {**_DROPPED_BLOCKS, "thinking": "reasoning belongs to assistant turns"}


# --- request ---------------------------------------------------------------------------------


@client_errors
def to_upstream(body: Any, ctx: RequestContext) -> dict[str, Any]:
    """Anthropic Messages request -> Codex Responses request; raises ProxyError(400) on bad input."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model: a model name is required", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: a non-empty list of messages is required", "messages")
    ctx.model = ctx.model or model.strip()
    upstream_model = map_model(model.strip(), ctx.options.model_map)
    tools, names, server_tools, defs = _tools(body.get("tools"), _referenced(messages))
    thinking, effort = _reasoning(body)
    state = ctx.state
    state.upstream_model, state.thinking = upstream_model, thinking
    state.stop_sequences = _stop_sequences(body.get("stop_sequences"))
    state.tool_names = {up: orig for orig, up in names.items() if up != orig}
    instructions = _instructions(body.get("system"))
    items = _Input(names, upstream_model, defs).build(messages)
    out: dict[str, Any] = {"model": upstream_model}
    if instructions:
        out["instructions"] = instructions
    out["input"] = items
    if tools:
        out["tools"] = tools
        out["tool_choice"], out["parallel_tool_calls"] = _tool_choice(
            body.get("tool_choice"), names, server_tools
        )
    out["reasoning"] = {"effort": effort, "summary": "auto"} if thinking else {"effort": effort}
    if thinking:
        out["include"] = ["reasoning.encrypted_content"]
    out["prompt_cache_key"] = prompt_cache_key(ctx.headers, items, instructions)
    tool_order.arrange(out, ctx.options.tool_order)
    state.cache_key, state.request_body = out["prompt_cache_key"], body  # for token calibration
    out["stream"] = True
    out["store"] = False
    return upstream_policy.apply(out)  # what the backend takes, whichever family built it


def _instructions(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system if system.strip() else ""
    if not isinstance(system, list):
        raise bad_request("system: must be a string or a list of text blocks", "system")
    texts = [
        block["text"]
        for block in system
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
        and block["text"].strip()
        and not block["text"].startswith(BILLING_PREFIX)
    ]
    return "\n\n".join(texts)


def _reasoning(body: dict[str, Any]) -> tuple[bool, str]:
    """(show thinking, reasoning effort) from `thinking` and `output_config.effort`."""
    raw = body.get("thinking")
    thinking = raw if isinstance(raw, dict) else {}
    kind = thinking.get("type")
    if raw is not None and kind not in ("enabled", "adaptive", "disabled"):
        raise bad_request("thinking.type: must be enabled, adaptive or disabled", "thinking.type")
    config = body.get("output_config")
    named = config.get("effort") if isinstance(config, dict) else None
    if isinstance(named, str) and named:
        effort = EFFORT_BY_NAME.get(named.lower())
        if effort is None:
            log.warning("unknown output_config.effort %r, using high", named)
            effort = "high"
    elif kind == "enabled":
        budget = thinking.get("budget_tokens")
        budget = budget if isinstance(budget, int) else 0
        effort = next((e for limit, e in BUDGET_EFFORT if budget < limit), "high")
    elif kind == "adaptive":
        effort = ADAPTIVE_EFFORT
    else:
        effort = THINKING_OFF_EFFORT
    return kind in ("enabled", "adaptive"), effort


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise bad_request("stop_sequences: must be a list of strings", "stop_sequences")
    return [s for s in value if s]


# --- tools -----------------------------------------------------------------------------------


def _referenced(messages: list[Any]) -> set[str]:
    """Tool names a `tool_reference` block (Claude Code's ToolSearch result) has loaded so far."""
    found: set[str] = set()

    def walk(content: Any) -> None:
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_reference":
                found.add(str(block.get("tool_name") or ""))
            elif isinstance(block, dict) and block.get("type") == "tool_result":
                walk(block.get("content"))

    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            walk(message.get("content"))
    return found


def _tools(
    raw: Any, referenced: set[str]
) -> tuple[list[dict[str, Any]], dict[str, str], set[str], dict[str, dict[str, Any]]]:
    """(upstream tools, {client name: upstream name}, names of server tools kept, {client name:
    upstream definition} of every function tool, deferred ones included).

    A `defer_loading` tool is what Anthropic's tool search hides until a `tool_reference` loads it:
    it is sent upstream only once referenced (so Claude Code's never-call placeholder never is),
    unless the request relies on Anthropic's server-side tool search, which the backend cannot run:
    then every tool is sent, or the deferred ones could never be found."""
    if raw is None:
        return [], {}, set(), {}
    if not isinstance(raw, list):
        raise bad_request("tools: must be a list", "tools")
    tools: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    server: set[str] = set()
    defs: dict[str, dict[str, Any]] = {}
    server_search = any(isinstance(t, dict) and str(t.get("type", "")).startswith("tool_search") for t in raw)
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise bad_request(f"tools.{i}: must be an object", f"tools.{i}")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            if isinstance(kind, str) and kind.startswith("web_search"):
                server.add(str(tool.get("name") or "web_search"))
                if not any(t.get("type") == "web_search" for t in tools):
                    tools.append(web_search_tool(tool))
            else:
                log.warning("dropping Anthropic server tool %r: the Codex backend has no equivalent", kind)
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"tools.{i}.name: a tool name is required", f"tools.{i}.name")
        if name in names:
            raise bad_request(f"tools: tool names must be unique ({name!r} repeats)", f"tools.{i}.name")
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise bad_request(f"tools.{i}.input_schema: must be an object", f"tools.{i}.input_schema")
        names[name] = upstream_tool_name(name)
        out = {"type": "function", "name": names[name]}
        if isinstance(tool.get("description"), str) and tool["description"]:
            out["description"] = tool["description"]
        out["parameters"] = clean_schema(schema or {})
        defs[name] = out
        if tool.get("defer_loading") is not True or name in referenced or server_search:
            tools.append(out)
    return tools, names, server, defs


def web_search_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's web search server tool as the backend's hosted `web_search` (the fields Codex CLI
    itself sends it): allowed_domains become `filters`, user_location is the same object in both APIs;
    blocked_domains and max_uses have no equivalent and are dropped, logged."""
    out: dict[str, Any] = {"type": "web_search"}
    allowed = tool.get("allowed_domains")
    if isinstance(allowed, list) and allowed:
        out["filters"] = {"allowed_domains": [d for d in allowed if isinstance(d, str)]}
    if isinstance(tool.get("user_location"), dict):
        out["user_location"] = tool["user_location"]
    for key in ("blocked_domains", "max_uses"):
        if tool.get(key):
            log.info("web search: %s is not supported by the backend's hosted search; dropped", key)
    return out


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input_schema as OpenAI function `parameters` (non-strict)."""
    out = _clean(schema)
    for key in _TOP_LEVEL_FORBIDDEN:
        branches = out.pop(key, None)
        if branches is None:
            continue
        log.info("tool schema: dropped top-level %s (OpenAI refuses it there)", key)
        for branch in branches if isinstance(branches, list) else []:
            if isinstance(branch, dict) and isinstance(branch.get("properties"), dict):
                props = out.setdefault("properties", {})
                for prop, sub in branch["properties"].items():
                    props.setdefault(prop, sub)
    out["type"] = "object"
    if not isinstance(out.get("properties"), dict):
        out["properties"] = {}
    return out


def _clean(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_DROP or (key == "type" and value is None):
            continue
        if key == "pattern" and not _valid_regex(value):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            value = {name: _clean(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            value = [_clean(sub) for sub in value]
        elif key in _SCHEMA_ONE:
            value = [_clean(sub) for sub in value] if isinstance(value, list) else _clean(value)
        out[key] = value
    return out


def _valid_regex(pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _tool_choice(choice: Any, names: dict[str, str], server: set[str]) -> tuple[Any, bool]:
    """(Responses tool_choice, parallel_tool_calls)."""
    if choice is None:
        return "auto", True
    if not isinstance(choice, dict):
        raise bad_request("tool_choice: must be an object", "tool_choice")
    parallel = choice.get("disable_parallel_tool_use") is not True
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        name = choice.get("name")
        if name in names:
            return {"type": "function", "name": names[name]}, parallel
        if name in server:
            return "required", parallel  # the only way to force a hosted tool that works everywhere
        raise bad_request(f"tool_choice.name: no tool named {name!r} in tools", "tool_choice.name")
    raise bad_request("tool_choice.type: must be auto, any, tool or none", "tool_choice.type")


# --- messages --------------------------------------------------------------------------------


@dataclass
class _Input:
    """Builds the Responses `input` list from Anthropic messages, checking their structure."""

    names: dict[str, str]
    model: str
    defs: dict[str, dict[str, Any]] = field(default_factory=dict)  # client tool name -> upstream tool
    calls: set[str] = field(default_factory=set)  # tool_use ids seen so far

    def build(self, messages: list[Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            where = f"messages.{i}"
            if not isinstance(message, dict):
                raise bad_request(f"{where}: each message must be an object", where)
            role = message.get("role")
            blocks = _blocks(message.get("content"), where)
            if role == "user":
                items += self._user(blocks, where)
            elif role == "assistant":
                items += self._assistant(blocks, where)
            elif role == "system":
                text = "\n\n".join(b["text"] for b in blocks if b.get("type") == "text" and b.get("text"))
                if text:
                    items.append(_message("developer", [{"type": "input_text", "text": text}]))
            else:
                raise bad_request(
                    f"{where}.role: must be user, assistant or system, not {role!r}", f"{where}.role"
                )
        return items

    def _user(self, blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            at = f"{where}.content.{j}"
            kind = block.get("type")
            if kind == "tool_result":
                call_id = block.get("tool_use_id")
                if not isinstance(call_id, str) or call_id not in self.calls:
                    raise bad_request(
                        f"{at}: tool_result refers to tool_use_id {call_id!r}, which no earlier assistant "
                        "tool_use has",
                        f"{at}.tool_use_id",
                    )
                output = _tool_output(block, at, self.defs)
                outputs.append({"type": "function_call_output", "call_id": call_id, "output": output})
            elif kind == "tool_use":
                raise bad_request(f"{at}: tool_use blocks belong in assistant messages", at)
            else:
                part = _input_part(block, at, self.defs)
                if part is not None:
                    parts.append(part)
        return outputs + ([_message("user", parts)] if parts else [])

    def _assistant(self, blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        texts: list[dict[str, Any]] = []

        def flush() -> None:
            if texts:
                items.append(_message("assistant", list(texts)))
                texts.clear()

        for j, block in enumerate(blocks):
            at = f"{where}.content.{j}"
            kind = block.get("type")
            if kind == "text":
                if block.get("text"):
                    texts.append({"type": "output_text", "text": block["text"]})
            elif kind == "tool_use":
                flush()
                items.append(self._call(block, at))
            elif kind == "thinking":
                reasoning = self._reasoning(block)
                if reasoning:
                    flush()
                    items.append(reasoning)
            elif kind in _DROPPED_BLOCKS:
                log.info("dropping a %s block at %s: %s", kind, at, _DROPPED_BLOCKS[kind])
            else:
                raise bad_request(f"{at}.type: assistant block type {kind!r} is not supported", f"{at}.type")
        flush()
        return items

    def _call(self, block: dict[str, Any], at: str) -> dict[str, Any]:
        call_id, name, args = block.get("id"), block.get("name"), block.get("input")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            raise bad_request(f"{at}: tool_use needs a string id and name", at)
        if args is not None and not isinstance(args, dict):
            raise bad_request(f"{at}.input: must be an object", f"{at}.input")
        self.calls.add(call_id)
        return {
            "type": "function_call",
            "call_id": call_id,
            "name": self.names.get(name) or upstream_tool_name(name),
            "arguments": json.dumps(args or {}, separators=(",", ":"), ensure_ascii=False),
        }

    def _reasoning(self, block: dict[str, Any]) -> dict[str, Any] | None:
        packed = decode_signature(block.get("signature"))
        if packed is None or packed.get("m", self.model) != self.model:
            return None  # another provider's or another model's reasoning: not ours to replay
        text = block.get("thinking")
        summary = [{"type": "summary_text", "text": text}] if isinstance(text, str) and text else []
        return {
            "type": "reasoning",
            "id": packed["id"],
            "summary": summary,
            "encrypted_content": packed["enc"],
        }


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise bad_request(
            f"{where}.content: must be a string or a list of content blocks", f"{where}.content"
        )
    return content


def _input_part(block: dict[str, Any], at: str, defs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A user-side block (also inside tool results) as a Responses input part."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "input_text", "text": str(block.get("text") or "")}
    if kind == "image":
        return _image(block, at)
    if kind == "document":
        return _document(block, at)
    if kind == "search_result":
        texts = [block.get("title"), block.get("source"), *_texts(block.get("content"))]
        return {"type": "input_text", "text": "\n".join(t for t in texts if isinstance(t, str) and t)}
    if kind == "tool_reference":
        return {"type": "input_text", "text": tool_reference_text(block, at, defs)}
    if kind in _USER_DROPPED:
        log.info("dropping a %s block at %s: %s", kind, at, _USER_DROPPED[kind])
        return None
    raise bad_request(f"{at}.type: user block type {kind!r} is not supported", f"{at}.type")


def tool_reference_text(block: dict[str, Any], at: str, defs: dict[str, dict[str, Any]]) -> str:
    """A ToolSearch hit as the text its tool description promises the model: the tool's definition in
    a <function> line (the tool itself is now in the request's tools)."""
    name = block.get("tool_name")
    if not isinstance(name, str) or not name:
        raise bad_request(f"{at}.tool_name: a tool name is required", f"{at}.tool_name")
    tool = defs.get(name)
    shown = (
        {k: tool[k] for k in ("description", "name", "parameters") if k in tool} if tool else {"name": name}
    )
    return "<function>" + json.dumps(shown, ensure_ascii=False, separators=(", ", ": ")) + "</function>"


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [str(b.get("text") or "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return []


def _source(block: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    source = block.get("source")
    return (source.get("type"), source) if isinstance(source, dict) else (None, {})


def _image(block: dict[str, Any], at: str) -> dict[str, Any]:
    kind, source = _source(block)
    if kind == "base64" and isinstance(source.get("data"), str):
        media = source.get("media_type") or "image/png"
        return {"type": "input_image", "image_url": f"data:{media};base64,{source['data']}"}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "input_image", "image_url": source["url"]}
    raise bad_request(f"{at}.source: images need a base64 or url source", f"{at}.source")


def _document(block: dict[str, Any], at: str) -> dict[str, Any]:
    kind, source = _source(block)
    title = block.get("title") if isinstance(block.get("title"), str) else ""
    if kind == "base64" and isinstance(source.get("data"), str):
        media = source.get("media_type") or "application/pdf"
        data_url = f"data:{media};base64,{source['data']}"
        return {"type": "input_file", "filename": title or "document.pdf", "file_data": data_url}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "input_file", "file_url": source["url"]}
    if kind in ("text", "content"):
        body = source.get("data") if kind == "text" else "\n".join(_texts(source.get("content")))
        return {"type": "input_text", "text": "\n\n".join(t for t in (title, str(body or "")) if t)}
    raise bad_request(f"{at}.source: documents need a base64, url, text or content source", f"{at}.source")


def _tool_output(
    block: dict[str, Any], at: str, defs: dict[str, dict[str, Any]]
) -> str | list[dict[str, Any]]:
    """A tool_result's content: a string when it is all text, else a list of input parts."""
    content = block.get("content")
    failed = block.get("is_error") is True
    if content is None or isinstance(content, str):
        text = content or ""
        return mark_error(text) if failed else text
    if not isinstance(content, list):
        raise bad_request(f"{at}.content: must be a string or a list of blocks", f"{at}.content")
    parts = [
        p for j, b in enumerate(_blocks(content, at)) if (p := _input_part(b, f"{at}.content.{j}", defs))
    ]
    if all(p["type"] == "input_text" for p in parts):
        text = "\n".join(p["text"] for p in parts)
        return mark_error(text) if failed else text
    if failed:
        if parts[0]["type"] == "input_text":
            parts[0] = {"type": "input_text", "text": mark_error(parts[0]["text"])}
        else:
            parts.insert(
                0, {"type": "input_text", "text": ERROR_PREFIX + "the tool failed; its output follows."}
            )
    return parts


def mark_error(text: str) -> str:
    """How a failed tool result reads to the model."""
    if text.lstrip().lower().startswith("error"):
        return text
    return ERROR_PREFIX + (text or "(no output)")
