"""Chat Completions request -> the Codex backend's Responses request (see the package docstring for
what each request field becomes)."""

from __future__ import annotations

import json
import logging
from typing import Any

from ...core.errors import bad_request
from .. import tool_names, tool_order, upstream_policy
from ..base import RequestContext, client_errors
from ..cache_key import prompt_cache_key

log = logging.getLogger(__name__)

_HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
        "verbosity",
        "service_tier",
        "prompt_cache_key",
        "stop",
        "n",
        "logprobs",
        "audio",
        "modalities",
    }
)
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}


# ---------------------------------------------------------------------------------------------------
# Request


@client_errors
def to_upstream(body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A Chat Completions request -> the Codex backend's Responses request body."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model is required", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list", "messages")
    _refuse_unanswerable(body)

    items = _input_items(messages)
    out: dict[str, Any] = {"model": model, "input": items, "stream": True, "store": False}
    legacy = bool(body.get("functions")) and not body.get("tools")
    tools = _tools(body)
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice", body.get("function_call"))
        if choice is not None:
            out["tool_choice"] = _tool_choice(
                choice, "tool_choice" if "tool_choice" in body else "function_call"
            )
        # Chat's default is parallel calls allowed; the legacy shape carries one call per message.
        out["parallel_tool_calls"] = False if legacy else bool(body.get("parallel_tool_calls", True))

    effort = body.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise bad_request("reasoning_effort must be a string", "reasoning_effort")
    if effort is not None or ctx.options.expose_reasoning:
        out["reasoning"] = {"effort": effort, "summary": "auto"} if effort else {"summary": "auto"}
        out["include"] = ["reasoning.encrypted_content"]
    text: dict[str, Any] = {}
    text_format = _text_format(body.get("response_format"))
    if text_format:
        text["format"] = text_format
    if body.get("verbosity") is not None:
        text["verbosity"] = body["verbosity"]
    if text:
        out["text"] = text
    if body.get("service_tier") is not None:
        out["service_tier"] = body["service_tier"]
    key = body.get("prompt_cache_key")
    out["prompt_cache_key"] = key if isinstance(key, str) and key else prompt_cache_key(ctx.headers, items)
    ctx.state.tool_names = tool_names.shorten(out)
    tool_order.arrange(out, ctx.options.tool_order)

    stream_options = body.get("stream_options")
    ctx.state.include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
    ctx.state.stop = _stops(body.get("stop"))
    ctx.state.legacy_functions = legacy
    ctx.model, ctx.stream = ctx.model or model, bool(body.get("stream"))
    ignored = sorted(k for k in body if k not in _HANDLED)
    if ignored:
        log.debug("chat request: not forwarded to the backend: %s", ", ".join(ignored))
    return upstream_policy.apply(out)  # what the backend takes, whichever family built it


def _refuse_unanswerable(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise bad_request("n must be 1: the Codex backend returns a single choice", "n")
    if body.get("logprobs"):
        raise bad_request("logprobs are not available from the Codex backend", "logprobs")
    if body.get("audio") or "audio" in (body.get("modalities") or []):
        raise bad_request("audio output is not supported by the Codex backend", "modalities")


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad_request("stop must be a string or a list of strings", "stop")
    return [s for s in stops if s]


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _input_items(messages: list[Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    legacy_call: str | None = None  # call id of the last legacy function_call not yet answered
    custom_calls: set[str] = set()  # call ids of custom (free-form) tool calls: their outputs differ
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request(f"{where} must be an object", where)
        role = msg.get("role")
        if role in ("system", "developer"):
            parts = [
                _text_part(p, f"{where}.content", "input_text") for p in _parts(msg.get("content"), where)
            ]
            if parts:
                items.append(_message("developer", parts))
        elif role == "user":
            parts = [
                _user_part(p, f"{where}.content[{j}]")
                for j, p in enumerate(_parts(msg.get("content"), where))
            ]
            if parts:
                items.append(_message("user", parts))
        elif role == "assistant":
            new = _assistant_items(msg, i)
            custom_calls |= {it["call_id"] for it in new if it["type"] == "custom_tool_call"}
            items += new
            if isinstance(msg.get("function_call"), dict):
                legacy_call = _legacy_call_id(i)
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise bad_request(
                    f"{where}.tool_call_id is required for a tool message", f"{where}.tool_call_id"
                )
            output = _call_output(call_id, msg.get("content"), where)
            if call_id in custom_calls:
                output["type"] = "custom_tool_call_output"
            items.append(output)
        elif role == "function":
            if legacy_call is None:
                raise bad_request(
                    f"{where}: a function message must follow an assistant message with function_call", where
                )
            items.append(_call_output(legacy_call, msg.get("content"), where))
            legacy_call = None
        else:
            raise bad_request(
                f"{where}.role must be system, developer, user, assistant, tool or function; got {role!r}",
                f"{where}.role",
            )
    return items


def _legacy_call_id(position: int) -> str:
    """Legacy function calls have no ids: derive one from the message position, the same every turn."""
    return f"call_legacy_{position}"


def _parts(content: Any, where: str) -> list[Any]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return content
    raise bad_request(f"{where}.content must be a string or a list of content parts", f"{where}.content")


def _text_part(part: Any, where: str, kind: str) -> dict[str, Any]:
    if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
        part = part.get("text")
    if not isinstance(part, str):
        raise bad_request(f"{where}: only text content parts are allowed here", where)
    return {"type": kind, "text": part}


def _user_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if isinstance(part, str) or kind in ("text", "input_text"):
        return _text_part(part, where, "input_text")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise bad_request(f"{where}.image_url.url must be a data: or https: URL", f"{where}.image_url")
        detail = (image.get("detail") if isinstance(image, dict) else None) or part.get("detail") or "auto"
        return {"type": "input_image", "image_url": url, "detail": detail}
    if kind == "input_image":
        if not part.get("image_url") and not part.get("file_id"):
            raise bad_request(f"{where}: input_image needs image_url or file_id", where)
        image = {k: part[k] for k in ("image_url", "file_id") if part.get(k)}
        return {"type": "input_image", **image, "detail": part.get("detail") or "auto"}
    if kind in ("file", "input_file"):
        spec = part.get("file") if kind == "file" else part
        spec = spec if isinstance(spec, dict) else {}
        if not spec.get("file_data") and not spec.get("file_id"):
            raise bad_request(f"{where}: a file part needs file_data or file_id", where)
        return {
            "type": "input_file",
            **{k: spec[k] for k in ("file_data", "file_id", "filename") if spec.get(k)},
        }
    if kind == "input_audio":
        raise bad_request(f"{where}: audio input is not supported by the Codex backend", where)
    raise bad_request(f"{where}: unsupported content part type {kind!r}", where)


def _assistant_items(msg: dict[str, Any], position: int) -> list[dict[str, Any]]:
    where = f"messages[{position}]"
    texts: list[str] = []
    for j, part in enumerate(_parts(msg.get("content"), where)):
        if isinstance(part, dict) and part.get("type") == "refusal":
            texts.append(str(part.get("refusal") or ""))
        else:
            texts.append(_text_part(part, f"{where}.content[{j}]", "output_text")["text"])
    texts = [t for t in texts if t]
    if not texts and isinstance(msg.get("refusal"), str) and msg["refusal"]:
        texts = [msg["refusal"]]
    items = [_message("assistant", [{"type": "output_text", "text": t} for t in texts])] if texts else []

    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise bad_request(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        kind = call.get("type", "function") if isinstance(call, dict) else None
        if kind not in ("function", "custom"):
            raise bad_request(f"{at}: only function and custom tool calls are supported", at)
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise bad_request(f"{at}.id is required", f"{at}.id")
        if kind == "custom":
            items.append(_custom_call(call["id"], call.get("custom"), f"{at}.custom"))
        else:
            items.append(_function_call(call["id"], call.get("function"), f"{at}.function"))
    legacy = msg.get("function_call")
    if legacy is not None:
        items.append(_function_call(_legacy_call_id(position), legacy, f"{where}.function_call"))
    return items


def _function_call(call_id: str, function: Any, where: str) -> dict[str, Any]:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise bad_request(f"{where}.name is required", f"{where}.name")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = "" if arguments is None else json.dumps(arguments, ensure_ascii=False)
    return {"type": "function_call", "call_id": call_id, "name": function["name"], "arguments": arguments}


def _custom_call(call_id: str, custom: Any, where: str) -> dict[str, Any]:
    if not isinstance(custom, dict) or not isinstance(custom.get("name"), str) or not custom["name"]:
        raise bad_request(f"{where}.name is required", f"{where}.name")
    text = custom.get("input")
    return {"type": "custom_tool_call", "call_id": call_id, "name": custom["name"], "input": str(text or "")}


def _call_output(call_id: str, content: Any, where: str) -> dict[str, Any]:
    """A tool result: text parts joined by newlines; with images, the Responses list form."""
    if content is None or isinstance(content, str):
        return {"type": "function_call_output", "call_id": call_id, "output": content or ""}
    parts = [_user_part(p, f"{where}.content[{j}]") for j, p in enumerate(_parts(content, where))]
    if all(p["type"] == "input_text" for p in parts):
        output: str | list[dict[str, Any]] = "\n".join(p["text"] for p in parts)
    else:
        output = parts
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name in ("tools", "functions"):
        tools = body.get(name) or []
        if not isinstance(tools, list):
            raise bad_request(f"{name} must be a list", name)
        for i, tool in enumerate(tools):
            where = f"{name}[{i}]"
            if name == "tools":
                kind = tool.get("type") if isinstance(tool, dict) else None
                if kind == "custom":
                    out.append(_custom_tool(tool.get("custom"), f"{where}.custom"))
                    continue
                if kind != "function":
                    raise bad_request(
                        f"{where}: only function and custom tools are supported", f"{where}.type"
                    )
                tool, where = tool.get("function"), f"{where}.function"
            out.append(_function_tool(tool, where))
    return out


def _function_tool(fn: Any, where: str) -> dict[str, Any]:
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise bad_request(f"{where}.name is required", f"{where}.name")
    tool: dict[str, Any] = {"type": "function", "name": fn["name"]}
    if isinstance(fn.get("description"), str):
        tool["description"] = fn["description"]
    tool["parameters"] = fn.get("parameters") or _EMPTY_PARAMETERS
    # The Responses API defaults to strict schemas; Chat does not.
    tool["strict"] = bool(fn.get("strict", False))
    return tool


def _custom_tool(spec: Any, where: str) -> dict[str, Any]:
    """A free-form tool: Chat's `{"type": "custom", "custom": {name, description, format}}` -> the
    Responses `custom` tool (a grammar format is flattened: `{type, syntax, definition}`)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise bad_request(f"{where}.name is required", f"{where}.name")
    tool: dict[str, Any] = {"type": "custom", "name": spec["name"]}
    if isinstance(spec.get("description"), str):
        tool["description"] = spec["description"]
    fmt = spec.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("grammar"), dict):
        grammar = fmt["grammar"]
        tool["format"] = {
            "type": "grammar",
            "syntax": grammar.get("syntax"),
            "definition": grammar.get("definition"),
        }
    elif isinstance(fmt, dict):
        tool["format"] = fmt
    return tool


def _tool_choice(choice: Any, param: str) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "allowed_tools":
        spec = choice.get("allowed_tools") or {}
        tools = [
            {"type": t.get("type", "function"), "name": (t.get(t.get("type", "function")) or {}).get("name")}
            for t in spec.get("tools") or []
            if isinstance(t, dict)
        ]
        if tools and all(isinstance(t["name"], str) and t["name"] for t in tools):
            return {"type": "allowed_tools", "mode": spec.get("mode", "auto"), "tools": tools}
    elif kind == "custom":
        name = (choice.get("custom") or {}).get("name") if isinstance(choice.get("custom"), dict) else None
        if isinstance(name, str) and name:
            return {"type": "custom", "name": name}
    elif isinstance(choice, dict):
        # legacy function_call: {"name": ...}; tool_choice: {"type": "function", "function": {"name": ...}}
        fn = choice if param == "function_call" else choice.get("function") if kind == "function" else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return {"type": "function", "name": name}
    raise bad_request(f"unsupported {param}: {json.dumps(choice)}", param)


def _text_format(fmt: Any) -> dict[str, Any] | None:
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not spec.get("name") or not isinstance(spec.get("schema"), dict):
            raise bad_request("response_format.json_schema needs a name and a schema", "response_format")
        out = {"type": "json_schema", "name": spec["name"], "schema": spec["schema"]}
        if spec.get("description"):
            out["description"] = spec["description"]
        out["strict"] = bool(spec.get("strict", False))
        return out
    raise bad_request(f"unsupported response_format type {kind!r}", "response_format")
