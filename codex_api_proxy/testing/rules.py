"""The Codex backend's request rules the fake enforces, with the backend's own error bodies: rejected
and unknown parameters, tool types and name lengths, replayed items and their ids.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from .script import Recorded, hex_id
from .tokens import TOKEN_EXPIRED, jwt_exp

REJECTED_PARAMS = ("max_output_tokens", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                   "metadata", "truncation", "user", "stream_options")  # fmt: skip


# The fields of the Codex CLI's own request body (codex-rs ResponsesApiRequest); like the backend, any
# other top-level field (prompt_cache_retention, context_management, background...) is a 400.
ACCEPTED_PARAMS = frozenset({"model", "instructions", "input", "tools", "tool_choice", "parallel_tool_calls",
                             "reasoning", "store", "stream", "include", "service_tier", "prompt_cache_key",
                             "text", "client_metadata"})  # fmt: skip


REFUSED_TOOL_PREFIXES = ("web_search_preview",)  # the OpenAI API's names for web_search: not the backend's


MAX_TOOL_NAME = 64


OUTPUT_OF = {"function_call_output": "function_call", "custom_tool_call_output": "custom_tool_call"}


def detail(message: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"detail": message}


def invalid(message: str, param: str | None = None, code: str | None = None) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def check_tools(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """Like the backend: a tool type it only knows by another name, and a name over 64 characters
    (in tools, the history's calls or tool_choice), are 400s."""
    named: list[tuple[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        kind = str(tool.get("type", "")) if isinstance(tool, dict) else ""
        if kind.startswith(REFUSED_TOOL_PREFIXES):
            message = f"Invalid value: '{kind}'. Supported values are: 'function', 'custom', 'web_search'..."
            return invalid(message, f"tools[{i}].type", "invalid_value")
        named.append((f"tools[{i}].name", tool.get("name") if isinstance(tool, dict) else None))
    for i, item in enumerate(body.get("input") or []):
        if isinstance(item, dict) and item.get("type") in ("function_call", "custom_tool_call"):
            named.append((f"input[{i}].name", item.get("name")))
    if isinstance(body.get("tool_choice"), dict):
        named.append(("tool_choice.name", body["tool_choice"].get("name")))
    for param, name in named:
        if isinstance(name, str) and len(name) > MAX_TOOL_NAME:
            message = (
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{MAX_TOOL_NAME}, but got a string with length {len(name)} instead."
            )
            return invalid(message, param, "string_above_max_length")
    return None


def not_found(item_id: Any) -> tuple[int, dict[str, Any]]:
    message = (
        f"Item with id '{item_id}' not found. Items are not persisted when `store` is set to false. "
        "Try again with `store` set to true, or remove this item from your input."
    )
    return invalid(message, "input")


def check_message(item: dict[str, Any], i: int) -> tuple[int, dict[str, Any]] | None:
    role = item.get("role")
    if role == "system":
        return detail("System messages are not allowed")
    content = item.get("content")
    for j, part in enumerate(content if isinstance(content, list) else []):
        kind = part.get("type") if isinstance(part, dict) else None
        if role == "assistant" and kind not in ("output_text", "refusal"):
            message = f"Invalid value: '{kind}'. Supported values are: 'output_text' and 'refusal'."
            return invalid(message, f"input[{i}].content[{j}]", "invalid_value")
        if kind == "input_image":
            url = part.get("image_url")
            if not ((isinstance(url, str) and url.startswith(("data:", "https://"))) or part.get("file_id")):
                where = f"input[{i}].content[{j}]"
                return detail(
                    f"Invalid input_image at {where}: needs image_url (data: or https URL) or file_id"
                )
    return None


class CodexRules:
    """The backend's checks of a POST /responses that need the fake's state: the bearer token and
    account, effort against the model catalog, replayed reasoning and compaction items against those
    it issued. A part of FakeBackend (which holds the state), kept here with the other rules."""

    access_tokens: set[str] | None
    account_id: str | None
    models: list[dict[str, Any]]
    issued_encrypted_content: set[str]
    accepted_encrypted_content: list[str]
    issued_compactions: set[str]
    accepted_compactions: list[str]
    _lock: threading.Lock

    def _bearer_ok(self, rec: Recorded) -> bool:
        scheme, _, token = rec.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        exp = jwt_exp(token)
        if exp is not None and exp <= time.time():
            return False
        with self._lock:
            return self.access_tokens is None or token in self.access_tokens

    def _check(self, rec: Recorded) -> tuple[int, dict[str, Any]] | None:
        """The backend's validation of POST /responses, in its order; None when the request passes."""
        if not self._bearer_ok(rec):
            return 401, TOKEN_EXPIRED
        if self.account_id is not None and rec.headers.get("chatgpt-account-id") != self.account_id:
            return detail("chatgpt-account-id header is missing or does not match the token's account", 403)
        body = rec.body
        if not isinstance(body, dict):
            return detail("Request body must be a JSON object")
        if body.get("stream") is not True:
            return detail("Stream must be set to true")
        if body.get("store") is not False:
            return detail("Store must be set to false")
        for name in body:
            if name in REJECTED_PARAMS or name not in ACCEPTED_PARAMS:
                return detail(f"Unsupported parameter: {name}")
        problem = check_tools(body)
        if problem:
            return problem
        if not isinstance(body.get("model"), str) or not body["model"]:
            return detail("Missing required parameter: model")
        instructions = body.get("instructions", "x")
        if not isinstance(instructions, str) or not instructions.strip():
            return detail("Instructions are not valid")
        for i, tool in enumerate(body.get("tools") or []):
            if (
                isinstance(tool, dict)
                and tool.get("type") == "function"
                and not isinstance(tool.get("name"), str)
            ):
                param = f"tools[{i}].name"
                return invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
        if not isinstance(body.get("input"), list):
            return detail("Input must be a list")
        return self._check_effort(body) or self._check_input(body["input"])

    def _check_effort(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Like the backend: an effort the catalog does not list for the model is a 400."""
        effort = (
            (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        )
        model = next((m for m in self.models if m.get("slug") == body["model"]), None)
        if effort is None or model is None:
            return None
        levels = [lv["effort"] for lv in model.get("supported_reasoning_levels") or []]
        if effort in levels:
            return None
        allowed = ", ".join(f"'{lv}'" for lv in levels)
        message = (
            f"Unsupported value: '{effort}' is not supported with the '{body['model']}' model. "
            f"Supported values are: {allowed}."
        )
        return invalid(message, "reasoning.effort", "unsupported_value")

    def _check_input(self, items: list[Any]) -> tuple[int, dict[str, Any]] | None:
        calls: dict[str, set[Any]] = {"function_call": set(), "custom_tool_call": set()}
        replayed: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return detail(f"Invalid input item at index {i}: expected an object")
            kind = item.get("type", "message")
            if kind == "reasoning":
                enc = item.get("encrypted_content")
                if not isinstance(enc, str) and item.get("id"):
                    return not_found(item["id"])
                with self._lock:
                    if enc not in self.issued_encrypted_content:
                        return invalid(
                            "The encrypted content could not be verified.", None, "invalid_encrypted_content"
                        )
                replayed.append(enc)
                continue
            if item.get("id"):
                return not_found(item["id"])
            if kind == "compaction":
                problem = self._check_compaction(item)
                if problem:
                    return problem
            elif kind == "message":
                problem = check_message(item, i)
                if problem:
                    return problem
            elif kind in calls:
                calls[kind].add(item.get("call_id"))
            elif kind in OUTPUT_OF and item.get("call_id") not in calls[OUTPUT_OF[kind]]:
                what = kind.replace("_", " ")
                return detail(f"No tool call found for {what} with call_id {item.get('call_id')}.")
        with self._lock:
            self.accepted_encrypted_content.extend(replayed)
        return None

    def _issue_compaction(self, rec: Recorded) -> dict[str, Any]:
        """One `compaction` item standing for the request's history (its encrypted summary)."""
        enc = "cmp_" + secrets.token_hex(16)
        with self._lock:
            self.issued_compactions.add(enc)
        return {"type": "compaction", "id": hex_id("cmp"), "encrypted_content": enc}

    def _check_compaction(self, item: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        enc = item.get("encrypted_content")
        with self._lock:
            if enc not in self.issued_compactions:
                return invalid(
                    "The encrypted content could not be verified.", None, "invalid_encrypted_content"
                )
            self.accepted_compactions.append(enc)
        return None
