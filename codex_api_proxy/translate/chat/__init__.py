"""OpenAI Chat Completions <-> the Codex backend's Responses API.

Requests: every message becomes a Responses input item at its own position (system and developer
messages become `developer` messages, so no `instructions` is sent); assistant tool calls and tool
results become `function_call` / `function_call_output` items paired by call id (a tool result's text
parts are joined by newlines; one with images keeps the Responses list form of `output`). Legacy
`function_call` turns get a call id derived from their message position, stable across turns.

Request fields the backend cannot take are never forwarded; each one is:
- mapped: tools, tool_choice, parallel_tool_calls, functions, function_call, response_format,
  reasoning_effort, verbosity, service_tier, prompt_cache_key;
- honoured by the proxy: `stop` (the answer is cut at the first stop string, finish_reason "stop"),
  `stream_options.include_usage` (a usage chunk before `[DONE]`);
- refused with a 400, because the answer would silently differ from what was asked: `n` > 1,
  `logprobs: true`, audio output (`audio`, `modalities` with "audio"), `input_audio` content parts;
- accepted and dropped (logged at debug): max_tokens / max_completion_tokens (the backend refuses
  max_output_tokens; the answer is not cut), temperature, top_p, seed, frequency_penalty,
  presence_penalty, logit_bias, top_logprobs (sampling hints the backend refuses), user,
  safety_identifier, metadata and store (store must be false upstream and metadata needs it),
  stream_options other than include_usage, prediction, and anything unknown; tool_choice and
  parallel_tool_calls without tools (they would only make the backend refuse the request).

`to_upstream` fills `ctx.model` (when empty) and `ctx.stream` from the body. `ctx.options` read and
written here: "expose_reasoning" (set by the caller: reasoning summaries as `reasoning_content`),
"stop", "include_usage" and "legacy_functions" (written by `to_upstream` for the `Stream` /
`from_response` of the same request). A request that used the legacy `functions` field gets the
legacy `function_call` answer shape.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import ProxyError, bad_request
from ...core.sse import DONE, frame
from .. import tool_names, tool_order
from ..accumulate import usage_of
from ..base import RequestContext, StreamTranslator, client_errors
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
    if effort is not None or ctx.options.get("expose_reasoning"):
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
    ctx.options["tool_names"] = tool_names.shorten(out)
    tool_order.arrange(out, ctx.options)

    stream_options = body.get("stream_options")
    ctx.options["include_usage"] = isinstance(stream_options, dict) and bool(
        stream_options.get("include_usage")
    )
    ctx.options["stop"] = _stops(body.get("stop"))
    ctx.options["legacy_functions"] = legacy
    ctx.model, ctx.stream = ctx.model or model, bool(body.get("stream"))
    ignored = sorted(k for k in body if k not in _HANDLED)
    if ignored:
        log.debug("chat request: not forwarded to the backend: %s", ", ".join(ignored))
    return out


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


# ---------------------------------------------------------------------------------------------------
# Response


@dataclass
class _StopCutter:
    """Cuts the answer at the first stop string, holding back a tail that may begin one."""

    stops: list[str]
    held: str = ""
    hit: bool = False

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        if not self.stops:
            return text
        text = self.held + text
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit, self.held = True, ""
            return text[:cut]
        longest = max(len(s) for s in self.stops)
        keep = next(
            (
                k
                for k in range(min(len(text), longest - 1), 0, -1)
                if any(s.startswith(text[-k:]) for s in self.stops)
            ),
            0,
        )
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _chat_id(response: dict[str, Any]) -> str:
    """`chatcmpl-` + the upstream response id's suffix, so the two can be matched in logs."""
    rid = response.get("id")
    return "chatcmpl-" + (
        rid.removeprefix("resp_") if isinstance(rid, str) and rid else uuid.uuid4().hex[:24]
    )


def _usage(response: dict[str, Any]) -> dict[str, Any]:
    u = usage_of(response)
    return {
        "prompt_tokens": u["input"],
        "completion_tokens": u["output"],
        "total_tokens": u["total"],
        "prompt_tokens_details": {"cached_tokens": u["cached"]},
        "completion_tokens_details": {"reasoning_tokens": u["reasoning"]},
    }


def _finish_reason(response: dict[str, Any], called: bool, legacy: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    if called:
        return "function_call" if legacy else "tool_calls"
    return "stop"


def _item_texts(item: dict[str, Any]) -> dict[str, str]:
    """What a finished output item says, per chat channel (summary parts as paragraphs)."""
    kind = item.get("type")
    if kind == "message":
        parts = item.get("content") or []
        return {
            "content": "".join(p.get("text") or "" for p in parts if p.get("type") == "output_text"),
            "refusal": "".join(p.get("refusal") or "" for p in parts if p.get("type") == "refusal"),
        }
    if kind == "function_call":
        return {"arguments": item.get("arguments") or ""}
    if kind == "custom_tool_call":
        return {"input": item.get("input") or ""}
    if kind == "reasoning":
        return {"reasoning": "\n\n".join(s.get("text") or "" for s in item.get("summary") or [])}
    return {}


_CALLS = ("function_call", "custom_tool_call")


def _tool_call(item: dict[str, Any], names: dict[str, str], said: dict[str, str]) -> dict[str, Any]:
    """A finished call item -> a Chat tool call (a custom one carries `custom: {name, input}`)."""
    name = names.get(item.get("name") or "", item.get("name") or "")
    if item.get("type") == "custom_tool_call":
        return {"id": item.get("call_id"), "type": "custom", "custom": {"name": name, "input": said["input"]}}
    return {
        "id": item.get("call_id"),
        "type": "function",
        "function": {"name": name, "arguments": said["arguments"]},
    }


def from_response(response: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The aggregated Responses object -> one `chat.completion`."""
    legacy = bool(ctx.options.get("legacy_functions"))
    names = ctx.options.get("tool_names") or {}
    cutter = _StopCutter(list(ctx.options.get("stop") or []))
    text: list[str] = []
    refusal: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        said = _item_texts(item)
        kind = item.get("type")
        if kind == "message":
            text += [cutter.feed(said["content"]), cutter.flush()]
            refusal.append(said["refusal"])
        elif kind in _CALLS:
            calls.append(_tool_call(item, names, said))
        elif kind == "reasoning" and said["reasoning"]:
            reasoning.append(said["reasoning"])
        if cutter.hit:
            break
    content, refused = "".join(text), "".join(refusal)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content or (None if calls or refused else ""),
        "refusal": refused or None,
    }
    if legacy and calls:
        message["function_call"] = calls[0].get("function") or calls[0]["custom"]
    elif calls:
        message["tool_calls"] = calls
    if ctx.options.get("expose_reasoning") and reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    finish = "stop" if cutter.hit else _finish_reason(response, bool(calls), legacy)
    return {
        "id": _chat_id(response),
        "object": "chat.completion",
        "created": int(response.get("created_at") or time.time()),
        "model": ctx.model or response.get("model") or "",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(response),
        "system_fingerprint": None,
    }


def _choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


@dataclass
class _Item:
    """One upstream output item as far as the client has seen it."""

    seen: dict[str, str] = field(default_factory=dict)  # channel -> text already taken from upstream
    tool_index: int | None = None  # position among the answer's calls, once announced
    summary_index: int | None = None  # reasoning: the summary part being streamed


class Stream(StreamTranslator):
    """Responses SSE -> `chat.completion.chunk` SSE, one stable id, `[DONE]` only after a real finish."""

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.id = _chat_id({})
        self.created = int(time.time())
        self.started = False
        self.stopped = False  # a stop string ended the answer; the rest of upstream is discarded
        self.items: dict[int, _Item] = {}
        self.calls = 0
        self.spoke = False  # some content or refusal came (else the answer's content is "")
        self.reasoned = False  # some reasoning was sent (the next summary part starts a paragraph)
        self.cutter = _StopCutter(list(ctx.options.get("stop") or []))
        self.legacy = bool(ctx.options.get("legacy_functions"))
        self.expose = bool(ctx.options.get("expose_reasoning"))

    def _envelope(self, **fields: Any) -> bytes:
        return frame(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.ctx.model,
                "system_fingerprint": None,
                **fields,
            }
        )

    def _send(self, delta: dict[str, Any], finish: str | None = None) -> list[bytes]:
        """One chunk, after the role chunk when it is the first.

        The role chunk has no `content` key, so a tool-only answer accumulates to content null in the
        SDK, as in the non-streaming answer.
        """
        out = []
        if not self.started:
            self.started = True
            out.append(self._envelope(choices=[_choice({"role": "assistant"})]))
        if delta or finish:
            out.append(self._envelope(choices=[_choice(delta, finish)]))
        return out

    def _item(self, idx: Any) -> _Item:
        return self.items.setdefault(idx if isinstance(idx, int) else -1, _Item())

    def on_event(self, kind: str, data: dict[str, Any]) -> list[bytes]:
        if kind == "response.created":
            response = data.get("response") or {}
            if not self.started:
                self.id = _chat_id(response)
                self.created = int(response.get("created_at") or self.created)
            return self._send({})
        if kind in ("response.completed", "response.incomplete"):
            response = dict(data.get("response") or {})
            if kind == "response.incomplete":
                response["status"] = "incomplete"
            return self._finish(response)
        if self.stopped:
            return []
        idx = data.get("output_index")
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            return self._announce(idx, item) if item.get("type") in _CALLS else []
        if kind == "response.output_text.delta":
            return self._emit(idx, "content", data.get("delta") or "")
        if kind == "response.refusal.delta":
            return self._emit(idx, "refusal", data.get("delta") or "")
        if kind == "response.function_call_arguments.delta":
            return self._emit(idx, "arguments", data.get("delta") or "")
        if kind == "response.custom_tool_call_input.delta":
            return self._emit(idx, "input", data.get("delta") or "")
        if kind == "response.reasoning_summary_text.delta":
            return self._reasoning(idx, data.get("summary_index", 0), data.get("delta") or "")
        if kind == "response.output_item.done":
            return self._complete(idx, data.get("item") or {})
        return []

    def _emit(self, idx: Any, channel: str, piece: str) -> list[bytes]:
        state = self._item(idx)
        if not piece or (channel in ("arguments", "input") and state.tool_index is None):
            return []  # arguments before their call was announced are sent at output_item.done
        state.seen[channel] = state.seen.get(channel, "") + piece
        if channel == "content":
            self.spoke = True
            out = self._send({"content": text}) if (text := self.cutter.feed(piece)) else []
            if self.cutter.hit:
                self.stopped = True
                out += self._send({}, "stop")
                if not self.ctx.options.get("include_usage"):
                    # complete: end now rather than when the model stops (usage would need the end)
                    self.finished = True
                    out.append(DONE)
            return out
        if channel == "refusal":
            self.spoke = True
            return self._send({"refusal": piece})
        if self.legacy:
            return self._send({"function_call": {"arguments": piece}}) if state.tool_index == 0 else []
        if channel == "input":
            return self._send({"tool_calls": [{"index": state.tool_index, "custom": {"input": piece}}]})
        return self._send({"tool_calls": [{"index": state.tool_index, "function": {"arguments": piece}}]})

    def _reasoning(self, idx: Any, part: Any, piece: str) -> list[bytes]:
        if not self.expose or not piece:
            return []
        state = self._item(idx)
        new_part = state.summary_index != part
        if new_part and state.seen.get("reasoning"):
            state.seen["reasoning"] += "\n\n"  # as `_item_texts` joins the item's summary parts
        state.summary_index = part
        return self._send_reasoning(state, piece, new_part)

    def _send_reasoning(self, state: _Item, piece: str, new_paragraph: bool) -> list[bytes]:
        """Summary parts (of one item or several) reach the client as paragraphs."""
        state.seen["reasoning"] = state.seen.get("reasoning", "") + piece
        if new_paragraph and self.reasoned:
            piece = "\n\n" + piece
        self.reasoned = True
        return self._send({"reasoning_content": piece})

    def _announce(self, idx: Any, call: dict[str, Any]) -> list[bytes]:
        """A function call's first delta: index, id, type and name, never repeated afterwards."""
        state = self._item(idx)
        if state.tool_index is not None:
            return []
        state.tool_index, self.calls = self.calls, self.calls + 1
        out = self._flush_text()
        name, call_id = call.get("name") or "", call.get("call_id") or f"call_{uuid.uuid4().hex[:24]}"
        name = (self.ctx.options.get("tool_names") or {}).get(name, name)
        if call.get("type") == "custom_tool_call" and not self.legacy:
            head = {"index": state.tool_index, "id": call_id, "type": "custom"}
            return out + self._send({"tool_calls": [{**head, "custom": {"name": name, "input": ""}}]})
        if not self.legacy:
            head = {"index": state.tool_index, "id": call_id, "type": "function"}
            return out + self._send({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        if state.tool_index == 0:
            return out + self._send({"function_call": {"name": name, "arguments": ""}})
        log.warning("chat stream: dropped function call %r: the legacy function_call shape holds one", name)
        return out

    def _flush_text(self) -> list[bytes]:
        text = self.cutter.flush()
        return self._send({"content": text} if text else {})

    def _complete(self, idx: Any, item: dict[str, Any]) -> list[bytes]:
        """An item is done: send whatever of it the deltas did not carry (all of it, without deltas)."""
        out = self._announce(idx, item) if item.get("type") in _CALLS else []
        state = self._item(idx)
        for channel, full in _item_texts(item).items():
            seen = state.seen.get(channel, "")
            if (channel == "reasoning" and not self.expose) or full == seen:
                continue
            if not full.startswith(seen):
                log.warning("chat stream: upstream %s of output %s differs from its deltas", channel, idx)
            elif channel == "reasoning":
                out += self._send_reasoning(state, full[len(seen) :], new_paragraph=not seen)
            else:
                out += self._emit(idx, channel, full[len(seen) :])
        if item.get("type") == "message" and not self.stopped:
            out += self._flush_text()
        return out

    def _finish(self, response: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if not self.stopped:
            out += self._flush_text()
            if not self.spoke and not self.calls:  # an empty answer: content "", as from_response says
                out += self._send({"content": ""})
            out += self._send({}, _finish_reason(response, self.calls > 0, self.legacy))
        if self.ctx.options.get("include_usage"):
            out.append(self._envelope(choices=[], usage=_usage(response)))
        return [*out, DONE]

    def on_failure(self, error: ProxyError) -> list[bytes]:
        if self.stopped:  # the answer had ended at a stop string before upstream failed: it is complete
            return [DONE]
        return [frame(error.openai_body())]
