"""Reasoning effort clamped to what the model catalog says the model supports, so a client's `minimal`
or `max` never costs an upstream 400 (the fake refuses unlisted efforts like the backend)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from codex_api_proxy.core.models import KNOWN_LEVELS, catalog_levels, clamp_effort
from codex_api_proxy.testing.fake_backend import DEFAULT_MODELS, FakeBackend, Turn

LOW_TO_XHIGH = ("low", "medium", "high", "xhigh")


@pytest.mark.parametrize(
    ("levels", "wanted", "sent"),
    [
        (LOW_TO_XHIGH, "medium", "medium"),
        (LOW_TO_XHIGH, "minimal", "low"),
        (LOW_TO_XHIGH, "none", "low"),
        (LOW_TO_XHIGH, "max", "xhigh"),
        (LOW_TO_XHIGH, "ultra", "xhigh"),
        ((*LOW_TO_XHIGH, "max"), "max", "max"),
        ((*LOW_TO_XHIGH, "max", "ultra"), "ultra", "max"),  # Codex sends its Ultra as max
        (("low", "high"), "medium", "low"),
        (("medium", "high"), "low", "medium"),
        (LOW_TO_XHIGH, "turbo", "turbo"),  # not an effort name: the backend explains it
    ],
)
def test_clamp_effort(levels: tuple[str, ...], wanted: str, sent: str) -> None:
    assert clamp_effort(levels, wanted) == sent


def test_catalog_levels_and_built_in_table() -> None:
    levels = catalog_levels({"models": DEFAULT_MODELS})
    assert levels["gpt-5.5"] == LOW_TO_XHIGH and levels["gpt-5.4-mini"] == ("low", "medium", "high")
    assert KNOWN_LEVELS["gpt-5.5"] == LOW_TO_XHIGH and "max" in KNOWN_LEVELS["gpt-5.6-sol"]
    assert "minimal" not in {e for lv in KNOWN_LEVELS.values() for e in lv}


@pytest.fixture
def catalog(fake: FakeBackend, http: httpx.Client) -> Iterator[FakeBackend]:
    """A catalog with a model that supports `max` and one that starts at `medium` (the session proxy's
    cached listing is refreshed after, so later tests see the default catalog again)."""
    extra = [
        {**DEFAULT_MODELS[0], "slug": "gpt-max-demo", "display_name": "max demo",
         "supported_reasoning_levels": [{"effort": e} for e in (*LOW_TO_XHIGH, "max")]},
        {**DEFAULT_MODELS[0], "slug": "gpt-medium-demo", "display_name": "medium demo",
         "supported_reasoning_levels": [{"effort": e} for e in ("medium", "high")]},
    ]  # fmt: skip
    fake.models = [*fake.models, *extra]
    yield fake
    fake.models = [dict(m) for m in DEFAULT_MODELS]
    http.get("/v1/models", params={"refresh": "1"})


def sent_effort(
    http: httpx.Client, fake: FakeBackend, model: str, effort: str, path: str = "/v1/responses"
) -> str:
    fake.enqueue(Turn())
    if path == "/v1/responses":
        body = {"model": model, "input": "hi", "reasoning": {"effort": effort}}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort}
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    return fake.responses_requests[-1].body["reasoning"]["effort"]


def test_efforts_are_clamped_for_known_models(http: httpx.Client, fake: FakeBackend) -> None:
    assert sent_effort(http, fake, "gpt-5.5", "minimal") == "low"
    assert sent_effort(http, fake, "gpt-5.5", "max") == "xhigh"
    assert sent_effort(http, fake, "gpt-5.5", "high") == "high"
    assert sent_effort(http, fake, "gpt-5.5", "minimal", "/v1/chat/completions") == "low"


def test_efforts_follow_the_fetched_catalog(http: httpx.Client, catalog: FakeBackend) -> None:
    models = http.get("/v1/models", params={"refresh": "1"}).json()
    assert {"gpt-max-demo", "gpt-medium-demo"} <= {m["id"] for m in models["data"]}
    assert sent_effort(http, catalog, "gpt-max-demo", "max") == "max"  # passes where supported
    assert sent_effort(http, catalog, "gpt-medium-demo", "minimal") == "medium"
    assert sent_effort(http, catalog, "gpt-medium-demo", "xhigh") == "high"
    assert sent_effort(http, catalog, "gpt-5.4-mini", "xhigh") == "high"  # the catalog beats the table


def test_fake_refuses_an_effort_the_catalog_lacks(catalog: FakeBackend) -> None:
    """Without the clamp the backend would refuse: the fake does what the real one does."""
    body = {
        "model": "gpt-5.5",
        "input": [],
        "stream": True,
        "store": False,
        "reasoning": {"effort": "minimal"},
    }
    r = httpx.post(catalog.url + "/responses", json=body, trust_env=False, timeout=30,
                   headers={"authorization": "Bearer access-token-1", "chatgpt-account-id": "acct-test-1"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "reasoning.effort"
