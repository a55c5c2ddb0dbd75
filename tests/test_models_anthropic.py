"""GET /v1/models[/{id}] for Anthropic clients: the Claude names the model map routes, through the real
proxy with both SDKs and the real Claude Code's gateway model discovery."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import pytest

from codex_api_proxy.core import models
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .clients import CLAUDE_NEW, run_claude
from .conftest import Proxy


@pytest.fixture
def claude_sdk(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=proxy.url, api_key="unused", max_retries=0, http_client=httpx2.Client(trust_env=False)
    )


@pytest.fixture
def openai_sdk(proxy: Proxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.v1, api_key="unused", max_retries=0)


# ---- names and settings (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base"),
    [("claude-opus-4-5[1m]", "claude-opus-4-5"), ("gpt-5.5[1m]", "gpt-5.5"), ("claude-x[200k]", "claude-x"),
     ("claude-sonnet-4-5", "claude-sonnet-4-5"), ("odd[name]x", "odd[name]x")],
)  # fmt: skip
def test_bracket_suffix_is_not_part_of_the_route(name: str, base: str) -> None:
    assert models.base_name(name) == base
    assert models.map_model(name, {"opus": "gpt-5.4"}) == models.map_model(base, {"opus": "gpt-5.4"})


def test_claude_code_settings_follow_the_real_windows() -> None:
    catalog = [{"id": "gpt-5.5", "context_window": 272000}, {"id": "gpt-small", "context_window": 128000}]
    # every family on a 272K model: the [1m] names lift Claude Code over 200K, the window caps it at 272K
    assert models.claude_code_settings({"haiku": "gpt-5.5"}, catalog) == {
        "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4-5[1m]",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5[1m]",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5[1m]",
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "272000",
    }
    # a smaller model keeps its plain name and sets the compaction window for all
    got = models.claude_code_settings({"haiku": "gpt-small"}, catalog)
    assert got["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "claude-haiku-4-5"
    assert got["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == "128000"
    # a model the catalog does not know gets no advice
    assert "ANTHROPIC_DEFAULT_HAIKU_MODEL" not in models.claude_code_settings({"haiku": "gpt-x"}, catalog)
    exact = [{"id": "gpt-5.5", "context_window": 200000}]
    assert models.claude_code_settings({"haiku": "gpt-5.5"}, exact) == {
        **{f"ANTHROPIC_DEFAULT_{f}_MODEL": f"claude-{f.lower()}-4-5" for f in ("OPUS", "SONNET", "HAIKU")},
        "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "200000",  # Claude Code 2.1.332 takes `gpt-5.5` for 1M
    }
    huge = [{"id": "gpt-5.5", "context_window": 1_000_000}]
    assert "CLAUDE_CODE_AUTO_COMPACT_WINDOW" not in models.claude_code_settings({"haiku": "gpt-5.5"}, huge)


# ---- through the proxy -------------------------------------------------------------------------------


def test_anthropic_sdk_lists_the_mapped_claude_names(
    claude_sdk: anthropic.Anthropic, fake: FakeBackend
) -> None:
    listed = {m.id: m for m in claude_sdk.models.list(limit=1000)}
    for name in ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-5-5"):
        assert name in listed
    assert listed["claude-opus-4-5"].display_name == "claude-opus-4-5 → GPT-5.5 (272K)"
    assert listed["claude-haiku-4-5"].display_name.startswith("claude-haiku-4-5 → GPT-5.4 mini")
    assert listed["claude-opus-4-5"].max_input_tokens == 272000
    gpt = [m["slug"] for m in fake.models if m.get("visibility") == "list"]
    assert [i for i in listed if not i.startswith("claude")] == gpt  # the GPT models themselves, too


def test_anthropic_sdk_retrieves_claude_and_gpt_names(
    claude_sdk: anthropic.Anthropic, fake: FakeBackend
) -> None:
    model = claude_sdk.models.retrieve("claude-sonnet-4-5")
    assert model.id == "claude-sonnet-4-5" and "GPT-5.5" in model.display_name
    assert claude_sdk.models.retrieve("claude-opus-4-5[1m]").id == "claude-opus-4-5[1m]"
    assert claude_sdk.models.retrieve("gpt-5.4").display_name.startswith("GPT-5.4")
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude_sdk.models.retrieve("no-such-model")
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "not_found_error"


def test_openai_sdk_retrieves_gpt_models_and_404s_claude_names(
    openai_sdk: openai.OpenAI, fake: FakeBackend
) -> None:
    assert openai_sdk.models.retrieve("gpt-5.5").id == "gpt-5.5"
    assert all(not m.id.startswith("claude") for m in openai_sdk.models.list())
    with pytest.raises(openai.NotFoundError) as caught:
        openai_sdk.models.retrieve("claude-opus-4-5")  # the chat API would not route it
    assert caught.value.body["code"] == "not_found"


def test_format_query_selects_the_anthropic_shape(http: httpx.Client, fake: FakeBackend) -> None:
    data = http.get("/v1/models", params={"format": "anthropic"}).json()["data"]
    assert data[0]["type"] == "model" and data[0]["id"].startswith("claude")
    missing = http.get("/v1/models/nope", params={"format": "anthropic"})
    assert missing.status_code == 404 and missing.json()["type"] == "error"


def test_model_map_names_are_listed(fake: FakeBackend, tmp_path: Path) -> None:
    from .conftest import start_proxy

    p = start_proxy(
        tmp_path, fake, extra_args=["--model-map", "haiku=gpt-5.4,claude-team-special=gpt-5.4-mini"]
    )
    try:
        data = httpx.get(p.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}).json()["data"]
    finally:
        p.stop()
    names = {m["id"]: m["display_name"] for m in data}
    assert names["claude-haiku-4-5"] == "claude-haiku-4-5 → GPT-5.4 (272K)"
    assert names["claude-team-special"].startswith("claude-team-special → GPT-5.4 mini")


# ---- the real Claude Code ----------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("claude", [CLAUDE_NEW], ids=["newest"])
def test_claude_code_gateway_discovery_lists_the_mapped_models(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    """2.1.332 reads /v1/models at startup (-p too) when discovery is on and caches what it keeps:
    only ids containing claude/anthropic survive its filter."""
    fake.enqueue(Turn(output=[text("hi")]))
    env = {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}
    run = run_claude(proxy.url, "say hi", tmp_path, env=env, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    cache = json.loads((tmp_path / "cc-home/.claude/cache/gateway-models.json").read_text())
    assert cache["baseUrl"] == proxy.url
    shown = {m["id"]: m for m in cache["models"]}
    assert {"claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-5-5"} <= set(shown)
    assert "GPT-5.5" in shown["claude-opus-4-5"]["display_name"]
    assert "272K context window" in shown["claude-opus-4-5"]["description"]
