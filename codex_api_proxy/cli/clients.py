"""`codex-api-proxy claude|codex [ARGS]...`: run Claude Code or the Codex CLI through the proxy.

The client's settings are given to that one process (Claude Code's through its environment, the Codex
CLI's as `-c` overrides on its command line); nothing is written to the person's own settings. The
client replaces this process (exec), so its exit status, signals and terminal are the person's own.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import tomli_w

from ..core.options import API_KEY_ENV, CLAUDE_BIN_ENV, CODEX_BIN_ENV
from ..core.settings import default_auth_path
from .doctor import PROXY_VARS

PLACEHOLDER_KEY = "codex-api-proxy"  # the clients want some key; a proxy without a local key takes any
PROVIDER = "codex-api-proxy"
# Claude Code's calls to Anthropic's own hosts (telemetry, error reports, updates): not made
CLAUDE_OFFLINE = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                  "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1"}  # fmt: skip


@dataclass(frozen=True)
class Client:
    """A client this command can run: its program name, the variable naming another binary, and how
    a person installs it."""

    title: str
    program: str
    package: str
    override: str  # the variable naming another executable

    def binary(self) -> str:
        """The client's executable: the override variable's, else the one on PATH; else one line
        saying how to install it."""
        given = os.environ.get(self.override, "").strip()
        if given:
            path = shutil.which(given)
            if path is None:
                raise click.ClickException(f"${self.override} names {given}, which is not an executable")
            return path
        found = shutil.which(self.program)
        if found is None:
            raise click.ClickException(
                f"{self.title} is not installed (no `{self.program}` on PATH): "
                f"install it with `npm i -g {self.package}`, or set ${self.override} to its path"
            )
        return found


CLAUDE = Client("Claude Code", "claude", "@anthropic-ai/claude-code", CLAUDE_BIN_ENV)
CODEX = Client("The Codex CLI", "codex", "@openai/codex", CODEX_BIN_ENV)


def with_no_proxy(env: dict[str, str], host: str) -> None:
    """A person's outbound proxy must not carry the client's calls to the local proxy."""
    if not any(env.get(name) for name in PROXY_VARS if name.lower() != "no_proxy"):
        return
    for name in ("NO_PROXY", "no_proxy"):
        listed = [x for x in env.get(name, "").split(",") if x.strip()]
        env[name] = ",".join(listed + [h for h in (host, "localhost") if h not in listed])


def claude_env(
    environ: Mapping[str, str], base_url: str, host: str, key: str | None, windows: Mapping[str, str]
) -> dict[str, str]:
    """Claude Code's environment: the proxy and its key always; the window settings for the model map
    and the offline switches unless the person set them already."""
    env = {k: v for k, v in environ.items() if k != "ANTHROPIC_API_KEY"}  # no Anthropic key to a proxy
    env.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_AUTH_TOKEN=key or PLACEHOLDER_KEY)
    for name, value in {**windows, **CLAUDE_OFFLINE}.items():
        env.setdefault(name, value)
    with_no_proxy(env, host)
    return env


def person_sets_model(args: Sequence[str]) -> bool:
    """Whether the Codex CLI gets a model from its command line or the person's config.toml."""
    if any(a in ("-m", "--model") or a.startswith(("--model=", "-m=")) for a in args):
        return True
    home = os.environ.get("CODEX_HOME", "").strip()
    config = (Path(home).expanduser() if home else default_auth_path().parent) / "config.toml"
    try:
        return "model" in tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False


def codex_overrides(base_url: str, key: str | None, model: str | None) -> list[str]:
    """`-c` overrides for a provider pointing at the proxy. Plugins and apps are off: with them the
    Codex CLI contacts public hosts at start."""
    table = f"model_providers.{PROVIDER}"
    settings = {
        "model_provider": PROVIDER,
        f"{table}.name": PROVIDER,
        f"{table}.base_url": f"{base_url}/v1",
        f"{table}.wire_api": "responses",
        "features.plugins": False,
        "features.apps": False,
    }
    if key:
        settings[f"{table}.env_key"] = API_KEY_ENV
    if model:
        settings["model"] = model
    args: list[str] = []
    for name, value in settings.items():
        args += ["-c", f"{name}={toml_value(value)}"]
    return args


def toml_value(value: str | bool) -> str:
    """A value as TOML writes it (the Codex CLI parses each `-c` value as TOML)."""
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def codex_env(environ: Mapping[str, str], host: str, key: str | None) -> dict[str, str]:
    env = dict(environ)
    if key:
        env[API_KEY_ENV] = key  # the provider's env_key: the key reaches the client, not its argv
    with_no_proxy(env, host)
    return env


def run(binary: str, args: Sequence[str], env: Mapping[str, str]) -> None:
    """Become the client: its exit status is ours, a signal sent to us reaches it, and it has the
    terminal to itself."""
    os.execve(binary, [binary, *args], dict(env))
