"""Anthropic Messages API <-> Codex Responses API: request, stream and whole-response translation.

Choices a reader needs (each one is tested in tests/test_anthropic_translate.py):

- Models: `claude-*` names map by family (opus, sonnet, haiku; a claude name with no family counts as
  sonnet) through `ctx.options["model_map"]` over DEFAULT_MODEL_MAP; an exact name in the map wins;
  other names pass through. Responses echo the name the client asked for (`ctx.model`).
- Reasoning effort: `output_config.effort` wins (EFFORT_BY_NAME: max -> xhigh). Otherwise
  `thinking.enabled` budgets below 4,096 -> low, below 16,384 -> medium, else high; `adaptive` -> high;
  disabled or absent -> low, the lowest level every Codex model accepts (none/minimal are refused by
  some). Thinking blocks (reasoning.summary "auto" + encrypted reasoning) only when thinking is enabled
  or adaptive: an Anthropic client that did not ask for thinking never gets thinking blocks.
- Thinking signatures: a reasoning item travels to the client as a `thinking` block whose signature is
  "cxp1." + base64url(JSON {id, enc, m}) (item id, encrypted_content, upstream model). When Claude
  Code echoes the block, the reasoning item is restored in place, so GPT keeps its reasoning across tool
  calls. Signatures the proxy did not issue (a real Anthropic model's), ours from another upstream model,
  and `redacted_thinking` blocks are dropped. A reasoning item without summary text still becomes a
  thinking block (empty thinking + signature): the SDKs and Claude Code accept it and echo it back.
- Tool results: one `function_call_output` per tool_result, all of a user turn's outputs first (the
  backend wants them right after the calls, and Anthropic itself requires tool_results to lead the
  message), then one user message with the turn's other blocks in their order. `is_error: true` is
  shown to the model as an "Error: " prefix (unless the text already starts with "error"). A result
  with images or documents is sent as a list of input_text/input_image/input_file parts: the shape Codex
  CLI itself sends for its view_image tool, which keeps the image attached to its call.
- Tool names that are not `[A-Za-z0-9_-]{1,64}` are sent as sanitised prefix + "_" + 8 hex of their
  sha1 (deterministic); `ctx.options["tool_names"]` maps them back. Schemas lose $schema/$id/$comment,
  null types and regex patterns Python's `re` rejects (the OpenAI validator's "is not a 'regex'"),
  and top-level combinators (their properties are merged); no `strict`. Anthropic `web_search_*` server
  tools become {"type": "web_search"}; other server tools are dropped with a warning.
- Stop sequences are applied here (the backend has none): the text is cut at the first match, the
  stream holds back only a suffix that could start a stop sequence, and a match ends the message with
  stop_reason "stop_sequence" at once (output_tokens is then the count of the text sent).
- Unparseable function-call arguments in a whole response become {"_raw_arguments": "<raw>"}, never a
  silent {}: the client's schema check fails visibly and the model sees what it sent.
- Probes: a non-streaming request with max_tokens == 1 is Claude Code's count_tokens fallback; it is
  answered locally (the backend cannot cap output, so forwarding would generate a whole answer) with
  usage.input_tokens from tokens.py, content [] (an empty text block would be invalid if echoed back)
  and stop_reason "max_tokens".
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .. import tokens
from ..errors import ProxyError, bad_request
from ..sse import frame
from .accumulate import usage_of
from .base import RequestContext, StreamTranslator
from .cache_key import prompt_cache_key

log = logging.getLogger(__name__)

DEFAULT_MODEL_MAP = {"opus": "gpt-5.5", "sonnet": "gpt-5.5", "haiku": "gpt-5.4-mini"}
MODEL_FAMILIES = ("opus", "sonnet", "haiku")
EFFORT_BY_NAME = {"low": "low", "medium": "medium", "high": "high", "max": "xhigh"}
BUDGET_EFFORT = ((4096, "low"), (16384, "medium"))  # budget_tokens below the limit -> effort; else high
ADAPTIVE_EFFORT = "high"
THINKING_OFF_EFFORT = "low"
SIGNATURE_PREFIX = "cxp1."
BILLING_PREFIX = "x-anthropic-billing-header:"
ERROR_PREFIX = "Error: "

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SCHEMA_DROP = frozenset({"$schema", "$id", "$comment"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_ONE = frozenset({"items", "additionalItems", "additionalProperties", "not", "contains",
                        "propertyNames", "if", "then", "else", "unevaluatedProperties",
                        "unevaluatedItems"})  # fmt: skip
_TOP_LEVEL_FORBIDDEN = ("anyOf", "oneOf", "allOf", "not", "enum")
# Anthropic-only blocks with no Responses equivalent (server tool traffic, redacted reasoning): dropped.
_DROPPED_BLOCKS = frozenset({"redacted_thinking", "server_tool_use", "web_search_tool_result",
                            "web_fetch_tool_result", "code_execution_tool_result", "mcp_tool_use",
                            "mcp_tool_result", "container_upload"})  # fmt: skip
_SILENT_USER_BLOCKS = _DROPPED_BLOCKS | {"thinking"}


# --- names, models, signatures -----------------------------------------------------------------


def map_model(name: str, model_map: dict[str, str] | None = None) -> str:
    """The upstream model for a client model name (see the module docstring)."""
    table = {**DEFAULT_MODEL_MAP, **(model_map or {})}
    if name in table:
        return table[name]
    lower = name.lower()
    if not lower.startswith("claude"):
        return name
    family = next((f for f in MODEL_FAMILIES if f in lower), "sonnet")
    return table[family]


def upstream_tool_name(name: str) -> str:
    """A name the Responses API accepts; unchanged when it already is one."""
    if _TOOL_NAME.fullmatch(name):
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:55] + "_" + digest


def encode_signature(item_id: str, encrypted: str, model: str) -> str:
    raw = json.dumps({"id": item_id, "enc": encrypted, "m": model}, separators=(",", ":")).encode()
    return SIGNATURE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_signature(signature: Any) -> dict[str, str] | None:
    """The {id, enc, m} this proxy packed into a thinking signature, or None for anything else."""
    if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
        return None
    packed = signature[len(SIGNATURE_PREFIX) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("id", "enc")):
        return None
    return data


# --- request ---------------------------------------------------------------------------------


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
    upstream_model = map_model(model.strip(), ctx.options.get("model_map"))
    tools, names, server_tools = _tools(body.get("tools"))
    thinking, effort = _reasoning(body)
    ctx.options.update(
        upstream_model=upstream_model,
        thinking=thinking,
        stop_sequences=_stop_sequences(body.get("stop_sequences")),
        tool_names={up: orig for orig, up in names.items() if up != orig},
    )
    instructions = _instructions(body.get("system"))
    items = _Input(names, upstream_model).build(messages)
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
    out["stream"] = True
    out["store"] = False
    return out


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


def _tools(raw: Any) -> tuple[list[dict[str, Any]], dict[str, str], set[str]]:
    """(upstream tools, {client name: upstream name}, names of server tools kept)."""
    if raw is None:
        return [], {}, set()
    if not isinstance(raw, list):
        raise bad_request("tools: must be a list", "tools")
    tools: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    server: set[str] = set()
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise bad_request(f"tools.{i}: must be an object", f"tools.{i}")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            if isinstance(kind, str) and kind.startswith("web_search"):
                server.add(str(tool.get("name") or "web_search"))
                if {"type": "web_search"} not in tools:
                    tools.append({"type": "web_search"})
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
        tools.append(out)
    return tools, names, server


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
                outputs.append(
                    {"type": "function_call_output", "call_id": call_id, "output": _tool_output(block, at)}
                )
            elif kind == "tool_use":
                raise bad_request(f"{at}: tool_use blocks belong in assistant messages", at)
            else:
                part = _input_part(block, at)
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
            elif kind not in _DROPPED_BLOCKS:
                log.warning("dropping unsupported assistant block type %r at %s", kind, at)
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


def _input_part(block: dict[str, Any], at: str) -> dict[str, Any] | None:
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
    if kind not in _SILENT_USER_BLOCKS:
        log.warning("dropping unsupported user block type %r at %s", kind, at)
    return None


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


def _tool_output(block: dict[str, Any], at: str) -> str | list[dict[str, Any]]:
    """A tool_result's content: a string when it is all text, else a list of input parts."""
    content = block.get("content")
    failed = block.get("is_error") is True
    if content is None or isinstance(content, str):
        text = content or ""
        return mark_error(text) if failed else text
    if not isinstance(content, list):
        raise bad_request(f"{at}.content: must be a string or a list of blocks", f"{at}.content")
    parts = [p for j, b in enumerate(_blocks(content, at)) if (p := _input_part(b, f"{at}.content.{j}"))]
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


# --- responses -------------------------------------------------------------------------------


def _message_id(response_id: Any) -> str:
    if isinstance(response_id, str) and response_id:
        return "msg_" + response_id.split("_", 1)[-1]
    return "msg_" + uuid.uuid4().hex[:24]


def _usage(response: dict[str, Any]) -> dict[str, int]:
    usage = usage_of(response)
    return {
        "input_tokens": max(0, usage["input"] - usage["cached"]),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage["cached"],
        "output_tokens": usage["output"],
    }


def _stop_reason(response: dict[str, Any], tool_used: bool, refusal: bool) -> str:
    reason = (response.get("incomplete_details") or {}).get("reason")
    if reason == "max_output_tokens":
        return "max_tokens"
    if reason == "content_filter" or refusal:
        return "refusal"
    return "tool_use" if tool_used else "end_turn"


def _first_stop(text: str, stops: list[str]) -> tuple[int, str] | None:
    """(start, sequence) of the stop sequence that completes first in `text`."""
    best: tuple[int, int, str] | None = None
    for seq in stops:
        start = text.find(seq)
        if start >= 0 and (best is None or (start + len(seq), start) < best[:2]):
            best = (start + len(seq), start, seq)
    return (best[1], best[2]) if best else None


def _summary(item: dict[str, Any]) -> str:
    parts = [p.get("text") or "" for p in item.get("summary") or [] if isinstance(p, dict)]
    return "\n\n".join(p for p in parts if p)


def _arguments(raw: Any) -> dict[str, Any]:
    """Function-call arguments as a tool_use input (see the module docstring for invalid JSON)."""
    text = raw if isinstance(raw, str) else ""
    if not text.strip():
        return {}
    try:
        value, _ = json.JSONDecoder().raw_decode(text.strip())  # trailing junk is ignored, as the SDKs do
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    log.warning("function call arguments are not a JSON object: %.200s", text)
    return {"_raw_arguments": text}


def from_response(response: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The aggregated Responses object -> one Anthropic message."""
    names = ctx.options.get("tool_names") or {}
    stops = ctx.options.get("stop_sequences") or []
    content: list[dict[str, Any]] = []
    tool_used = refusal = False
    stop: str | None = None
    for item in response.get("output") or []:
        kind = item.get("type")
        if kind == "reasoning" and ctx.options.get("thinking"):
            enc = item.get("encrypted_content")
            text = _summary(item)
            if enc or text:
                sig = (
                    encode_signature(item.get("id") or "", enc, ctx.options.get("upstream_model", ""))
                    if enc
                    else ""
                )
                content.append({"type": "thinking", "thinking": text, "signature": sig})
        elif kind == "message":
            for part in item.get("content") or []:
                ptype = part.get("type")
                if ptype not in ("output_text", "refusal"):
                    continue
                refusal = refusal or ptype == "refusal"
                text = part.get("text" if ptype == "output_text" else "refusal") or ""
                hit = _first_stop(text, stops)
                if hit:
                    text, stop = text[: hit[0]], hit[1]
                if text:
                    content.append({"type": "text", "text": text})
                if stop is not None:
                    break
        elif kind == "function_call":
            tool_used = True
            name = item.get("name") or ""
            content.append(
                {
                    "type": "tool_use",
                    "id": item.get("call_id") or item.get("id") or "",
                    "name": names.get(name, name),
                    "input": _arguments(item.get("arguments")),
                }
            )
        if stop is not None:
            break
    return {
        "id": _message_id(response.get("id")),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": "stop_sequence" if stop is not None else _stop_reason(response, tool_used, refusal),
        "stop_sequence": stop,
        "usage": _usage(response),
    }


def is_probe(body: Any) -> bool:
    """Claude Code's count_tokens fallback: non-streaming, max_tokens exactly 1."""
    if not isinstance(body, dict) or body.get("stream"):
        return False
    limit = body.get("max_tokens")
    return isinstance(limit, int) and not isinstance(limit, bool) and limit == 1


def probe_response(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The local answer to a probe (see the module docstring)."""
    return {
        "id": _message_id(None),
        "type": "message",
        "role": "assistant",
        "model": ctx.model or body.get("model") or "",
        "content": [],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": tokens.count_tokens(body),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        },
    }


# --- stream ----------------------------------------------------------------------------------


class _StopCutter:
    """Stop-sequence search over streamed text, holding back only what could still become a match."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """(text safe to send now, the stop sequence that matched or None)."""
        buf = self.held + text
        hit = _first_stop(buf, self.stops)
        if hit:
            self.held = ""
            return buf[: hit[0]], hit[1]
        keep = max((_overlap(buf, seq) for seq in self.stops), default=0)
        self.held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], None

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _overlap(text: str, seq: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `seq`."""
    for size in range(min(len(text), len(seq) - 1), 0, -1):
        if text.endswith(seq[:size]):
            return size
    return 0


@dataclass
class _Block:
    key: tuple[Any, ...]  # ("reasoning", output_index) | ("text", output_index, content_index) | ("call", oi)
    index: int
    cutter: _StopCutter | None = None
    part: int | None = None  # reasoning: summary_index of the last thinking delta
    sent: str = ""  # tool_use: arguments sent so far


class Stream(StreamTranslator):
    """Responses SSE -> Anthropic SSE: one block open at a time, indices 0, 1, 2... in order."""

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.names: dict[str, str] = ctx.options.get("tool_names") or {}
        self.thinking = bool(ctx.options.get("thinking"))
        self.stops: list[str] = list(ctx.options.get("stop_sequences") or [])
        self.upstream_model: str = ctx.options.get("upstream_model", "")
        self.started = False
        self.block: _Block | None = None
        self.closed: set[tuple[Any, ...]] = set()
        self.count = 0
        self.tool_used = False
        self.refusal = False
        self.text_sent: list[str] = []  # only kept with stop sequences, to count output tokens at a match

    # events ---------------------------------------------------------------------------------

    def on_event(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        if self.finished:  # ended at a stop sequence; the driver may still flush one last event at EOF
            return []
        if kind in ("response.created", "response.in_progress"):
            return self._start(data.get("response") or {})
        out = self._start({})
        oi = data.get("output_index", 0)
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                out += self._open_call(oi, item)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            self.refusal = self.refusal or kind == "response.refusal.delta"
            out += self._text(("text", oi, data.get("content_index", 0)), data.get("delta") or "")
        elif kind == "response.reasoning_summary_text.delta":
            out += self._thinking(oi, data.get("summary_index", 0), data.get("delta") or "")
        elif kind == "response.function_call_arguments.delta":
            out += self._arguments(("call", oi), data.get("delta") or "")
        elif kind == "response.output_item.done":
            out += self._item_done(oi, data.get("item") or {})
        elif kind in ("response.completed", "response.incomplete"):
            out += self._finish(data.get("response") or {})
        return out

    def on_failure(self, error: ProxyError) -> list[bytes]:
        return [self._event("error", {"error": {"type": error.anthropic_type(), "message": error.message}})]

    def on_heartbeat(self) -> list[bytes]:
        return [self._event("ping", {})]

    # blocks ---------------------------------------------------------------------------------

    @staticmethod
    def _event(kind: str, payload: dict[str, Any]) -> bytes:
        return frame({"type": kind, **payload}, event=kind)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._event("content_block_delta", {"index": self._block().index, "delta": delta})

    def _start(self, response: dict[str, Any]) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message = {
            "id": _message_id(response.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self.ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(response),
        }
        return [self._event("message_start", {"message": message})]

    def _block(self) -> _Block:
        """The open block (callers have just checked or opened it)."""
        assert self.block is not None
        return self.block

    def _current(self, key: tuple[Any, ...]) -> bool:
        return self.block is not None and self.block.key == key

    def _open(self, key: tuple[Any, ...], block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block = _Block(
            key, self.count, _StopCutter(self.stops) if key[0] == "text" and self.stops else None
        )
        self.count += 1
        return [*out, self._event("content_block_start", {"index": self.block.index, "content_block": block})]

    def _close(self) -> list[bytes]:
        block = self.block
        if block is None:
            return []
        out = []
        rest = block.cutter.flush() if block.cutter else ""
        if rest:
            self.text_sent.append(rest)
            out.append(self._delta({"type": "text_delta", "text": rest}))
        out.append(self._event("content_block_stop", {"index": block.index}))
        self.closed.add(block.key)
        self.block = None
        return out

    def _text(self, key: tuple[Any, ...], text: str) -> list[bytes]:
        out: list[bytes] = []
        if not self._current(key):
            if not text or key in self.closed:
                return []
            out += self._open(key, {"type": "text", "text": ""})
        cutter = self._block().cutter
        send, hit = cutter.feed(text) if cutter else (text, None)
        if send:
            if self.stops:
                self.text_sent.append(send)
            out.append(self._delta({"type": "text_delta", "text": send}))
        if hit is not None:
            out += self._stop_sequence(hit)
        return out

    def _thinking(self, oi: int, part: int, text: str) -> list[bytes]:
        key = ("reasoning", oi)
        if not self.thinking or not text:
            return []
        out: list[bytes] = []
        if not self._current(key):
            if key in self.closed:
                return []
            out += self._open(key, {"type": "thinking", "thinking": "", "signature": ""})
        block = self._block()
        if block.part is not None and part != block.part:
            text = "\n\n" + text
        block.part = part
        return [*out, self._delta({"type": "thinking_delta", "thinking": text})]

    def _open_call(self, oi: int, item: dict[str, Any]) -> list[bytes]:
        key = ("call", oi)
        if self._current(key) or key in self.closed:
            return []
        name = item.get("name") or ""
        block = {
            "type": "tool_use",
            "id": item.get("call_id") or item.get("id") or "",
            "name": self.names.get(name, name),
        }
        self.tool_used = True
        return self._open(key, {**block, "input": {}}) + self._arguments(key, item.get("arguments") or "")

    def _arguments(self, key: tuple[Any, ...], piece: str) -> list[bytes]:
        if not piece or not self._current(key):
            return []  # a call whose block is not open: its done item carries the whole arguments
        self._block().sent += piece
        return [self._delta({"type": "input_json_delta", "partial_json": piece})]

    def _item_done(self, oi: int, item: dict[str, Any]) -> list[bytes]:
        kind = item.get("type")
        if kind == "function_call":
            key = ("call", oi)
            out = [] if self._current(key) else self._open_call(oi, item)  # a call seen only when done
            if not self._current(key):
                log.error("function call %s finished after its block was closed", item.get("call_id"))
                return out
            final, sent = item.get("arguments") or "", self._block().sent
            if final.startswith(sent):
                out += self._arguments(key, final[len(sent) :])
            else:
                log.error("streamed arguments of %s differ from the final ones", item.get("call_id"))
            return out + self._close()
        if kind == "message":
            out: list[bytes] = []
            for ci, part in enumerate(item.get("content") or []):
                key = ("text", oi, ci)
                if not self._current(key) and key not in self.closed:
                    self.refusal = self.refusal or part.get("type") == "refusal"
                    out += self._text(key, part.get("text") or part.get("refusal") or "")
                    if self.finished:
                        return out
                if self._current(key):
                    out += self._close()
            return out
        if kind == "reasoning":
            return self._reasoning_done(oi, item)
        return []

    def _reasoning_done(self, oi: int, item: dict[str, Any]) -> list[bytes]:
        key = ("reasoning", oi)
        if not self.thinking or (key in self.closed and not self._current(key)):
            return []
        enc = item.get("encrypted_content")
        out: list[bytes] = []
        if not self._current(key):
            text = _summary(item)
            if not text and not enc:
                return []
            out += self._open(key, {"type": "thinking", "thinking": "", "signature": ""})
            if text:
                out.append(self._delta({"type": "thinking_delta", "thinking": text}))
        if enc:
            signature = encode_signature(item.get("id") or "", enc, self.upstream_model)
            out.append(self._delta({"type": "signature_delta", "signature": signature}))
        return out + self._close()

    # endings --------------------------------------------------------------------------------

    def _stop_sequence(self, seq: str) -> list[bytes]:
        out = self._close()
        usage = {"output_tokens": tokens.count_text("".join(self.text_sent))}
        out.append(
            self._event(
                "message_delta",
                {"delta": {"stop_reason": "stop_sequence", "stop_sequence": seq}, "usage": usage},
            )
        )
        out.append(self._event("message_stop", {}))
        self.finished = True  # the rest of the upstream answer is not the client's
        return out

    def _finish(self, response: dict[str, Any]) -> list[bytes]:
        out = self._close()
        delta = {"stop_reason": _stop_reason(response, self.tool_used, self.refusal), "stop_sequence": None}
        out.append(self._event("message_delta", {"delta": delta, "usage": _usage(response)}))
        out.append(self._event("message_stop", {}))
        return out
