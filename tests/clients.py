"""Drive the real Claude Code and Codex CLI binaries (installed by .ci/run into .cache/) headless.

Outside CI a missing binary skips the test; in CI (CI=true) it fails, so a broken install can never
pass as 'all green'.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
CLAUDE = ROOT / ".cache/cc/node_modules/.bin/claude"
CODEX = ROOT / ".cache/codex/node_modules/.bin/codex"  # the pinned Codex CLI (0.169.0)
CODEX_NEW = ROOT / ".cache/codex-new/node_modules/.bin/codex"  # the newest one scripts/install knows
CLAUDE_NEW = ROOT / ".cache/cc-new/node_modules/.bin/claude"  # the newest release, installed next to the pin


def require(binary: Path) -> str:
    if not binary.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is missing: .ci/run must install it")
        pytest.skip(f"{binary.name} not installed (run .ci/run once)")
    return str(binary)


@dataclass
class ClaudeRun:
    returncode: int
    stderr: str
    events: list[dict[str, Any]]

    @property
    def result(self) -> dict[str, Any]:
        return next(e for e in self.events if e.get("type") == "result")

    def tool_results(self) -> list[dict[str, Any]]:
        return [
            block
            for e in self.events
            if e.get("type") == "user"
            for block in e["message"]["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]


def run_claude(base_url: str, prompt: str, tmp: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 180, claude: Path = CLAUDE) -> ClaudeRun:  # fmt: skip
    """`claude -p` with a fresh HOME and cwd, no traffic but to base_url (clients.md §1)."""
    binary = require(claude)
    home, work = tmp / "cc-home", tmp / "cc-work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    full_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": "unused-locally",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "2",
        **(env or {}),
    }
    cp = subprocess.run(
        [binary, "-p", prompt, "--model", "gpt-5.5", "--output-format", "stream-json", "--verbose", *args],
        cwd=work, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    events = [json.loads(line) for line in cp.stdout.splitlines() if line.strip().startswith("{")]
    return ClaudeRun(cp.returncode, cp.stderr, events)


def run_codex(
    base_url: str, prompt: str, tmp: Path, *args: str, timeout: float = 180, binary: Path = CODEX,
    provider: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`codex exec` with a model provider pointing at base_url (wire_api responses, clients.md §3);
    `provider` adds or overrides provider settings (e.g. name = "OpenAI" for remote compaction),
    `config` top-level settings.
    Plugins and apps are off: with them Codex contacts public hosts at start."""
    exe = require(binary)
    home, codex_home, work = tmp / "codex-cli-home", tmp / "codex-cli-codexhome", tmp / "codex-work"
    for d in (home, codex_home, work):
        d.mkdir(parents=True, exist_ok=True)
    proxy = {"name": "codex-api-proxy", "base_url": base_url, "wire_api": "responses", "env_key": "PROXY_KEY"}
    config = {
        "model": "gpt-5.5",
        "model_provider": "proxy",
        "model_providers": {"proxy": {**proxy, **(provider or {})}},
        "features": {"plugins": False, "apps": False},
        **(config or {}),
    }
    (codex_home / "config.toml").write_text(tomli_w.dumps(config))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "CODEX_HOME": str(codex_home),
           "PROXY_KEY": "unused-locally", "TERM": "dumb"}  # fmt: skip
    return subprocess.run(
        [exe, "exec", "--skip-git-repo-check", *args, prompt],
        cwd=work, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
