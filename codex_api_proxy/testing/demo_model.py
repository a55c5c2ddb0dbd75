"""The scripted model `codex-api-proxy demo` answers with (the fake's `default_turn`)."""

from __future__ import annotations

from typing import Any

from .script import FunctionCall, Recorded, Turn, function_call, text

DEMO_COMMAND = "echo hello from the codex-api-proxy demo"


class DemoModel:
    """A tiny scripted model for `codex-api-proxy demo`, installed as the fake's `default_turn`: text
    for a plain prompt, a real tool call when tools are offered (Bash `echo` for Claude Code,
    `exec_command`/`shell`/`shell_command` for the Codex CLI, the first function for anyone else), and after the tool
    ran, an answer quoting its result, so a newcomer sees a whole tool round trip with no login."""

    def __call__(self, rec: Recorded) -> Turn:
        body = rec.body if isinstance(rec.body, dict) else {}
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
        result = self.tool_result(items)
        if result is not None:
            output = result.split("\nOutput:\n", 1)[-1].strip()  # Codex's exec_command puts a header first
            quoted = output.splitlines()[0][:200] if output else "(no output)"
            return Turn(output=[text(f"The tool answered: {quoted}")])
        call = self.tool_call([t for t in body.get("tools") or [] if isinstance(t, dict)])
        if call is not None:
            return Turn(output=[text("Let me run a tool for that."), call])
        return Turn(
            output=[text(f"Hello from the codex-api-proxy demo model. You said: {self.prompt(items)!r}")]
        )

    @staticmethod
    def tool_result(items: list[Any]) -> str | None:
        """The output of the last tool call, when nothing the user said came after it."""
        for item in reversed(items):
            if not isinstance(item, dict):
                continue
            if item.get("type") in ("function_call_output", "custom_tool_call_output"):
                output = item.get("output")
                if isinstance(output, list):  # content parts
                    output = " ".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
                return str(output)
            if item.get("role") == "user":
                return None
        return None

    @staticmethod
    def tool_call(tools: list[dict[str, Any]]) -> FunctionCall | None:
        functions = {t.get("name"): t for t in tools if t.get("type") == "function" and t.get("name")}
        if "Bash" in functions:
            return function_call("Bash", {"command": DEMO_COMMAND, "description": "Say hello"})
        if "exec_command" in functions:
            return function_call("exec_command", {"cmd": DEMO_COMMAND})
        if "shell" in functions:
            return function_call("shell", {"command": ["bash", "-lc", DEMO_COMMAND]})
        if "shell_command" in functions:  # the Codex CLI's shell tool for some models
            return function_call("shell_command", {"command": DEMO_COMMAND})
        if not functions:
            return None
        name, tool = next(iter(functions.items()))
        return function_call(str(name), _sample_arguments(tool.get("parameters") or {}))

    @staticmethod
    def prompt(items: list[Any]) -> str:
        for item in reversed(items):
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                if isinstance(content, list):
                    content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
                return str(content or "")[-120:]
        return ""


def _sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that satisfy a function's JSON schema well enough for a demo: every required field."""
    samples = {"string": "demo", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    args: dict[str, Any] = {}
    for name in schema.get("required") or list(properties)[:1]:
        prop = properties.get(name) or {}
        kind = prop.get("type", "string")
        args[name] = (
            prop["enum"][0]
            if prop.get("enum")
            else samples.get(kind if isinstance(kind, str) else "string", "demo")
        )
    return args
