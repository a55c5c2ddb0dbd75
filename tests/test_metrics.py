"""Observability through the real proxy: both metric endpoints, request ids, quota figures, and the
exact accounting of every request (also under concurrency and when a client hangs up mid-stream)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import ACCESS_TOKEN, ACCOUNT_ID, Proxy, start_proxy

USAGE = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40}, "output_tokens": 20,
         "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 120}  # fmt: skip
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def obs(backend: FakeBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A proxy of this module's own, so its counters move only by what these tests send."""
    p = start_proxy(tmp_path_factory.mktemp("obs"), backend, extra_args=["--heartbeat", "0.3"])
    yield p
    p.stop()


@pytest.fixture
def client(obs: Proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=obs.url, timeout=60, trust_env=False) as c:
        yield c


def scrape(client: httpx.Client, headers: dict[str, str] | None = None) -> Samples:
    r = client.get("/metrics/prometheus", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """Growth of the sum of `name` samples whose labels include `labels`."""

    def total(samples: Samples) -> float:
        return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)

    return total(after) - total(before)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def post(client: httpx.Client, family: str, stream: bool, **headers: str) -> httpx.Response:
    if family == "responses":
        path, body = "/v1/responses", {"model": "gpt-5.5", "input": "hi", "stream": stream}
    elif family == "chat":
        path, body = "/v1/chat/completions", {"model": "gpt-5.4", "stream": stream,
                                              "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    else:
        path, body = "/v1/messages", {"model": "gpt-5.4-mini", "max_tokens": 100, "stream": stream,
                                      "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    r = client.post(path, json=body, headers=headers)
    r.read()
    return r


MODELS = {"responses": "gpt-5.5", "chat": "gpt-5.4", "anthropic": "gpt-5.4-mini"}
ROUTES = {"responses": "/responses", "chat": "/chat/completions", "anthropic": "/messages"}


def test_each_family_moves_the_counters_by_exactly_the_requests_made(
    client: httpx.Client, fake: FakeBackend
) -> None:
    before = scrape(client)
    before_json = client.get("/metrics").json()
    expected: Counter[tuple[str, str, str, str]] = Counter()
    for family in ("responses", "chat", "anthropic"):
        for stream in (False, True):
            fake.enqueue(Turn(output=[text("ok")], usage=USAGE))
            assert post(client, family, stream).status_code == 200
            expected[ROUTES[family], family, "2xx", MODELS[family]] += 1
            fake.enqueue(Turn.http_error(500))
            assert post(client, family, stream).status_code == 500
            expected[ROUTES[family], family, "5xx", MODELS[family]] += 1
        fake.enqueue(Turn.rate_limited())  # a failure inside the upstream stream, answered as a stream
        r = post(client, family, True)
        assert r.status_code == 200 and "rate" in r.text.lower()
        expected[ROUTES[family], family, "2xx", MODELS[family]] += 1
    assert client.post("/v1/chat/completions", content=b"{not json", headers=JSON_TYPE).status_code == 400
    expected["/chat/completions", "chat", "4xx", ""] += 1
    assert client.get("/v1/nowhere").status_code == 404
    expected["other", "other", "4xx", ""] += 1
    assert client.get("/health").status_code == 200
    expected["/health", "local", "2xx", ""] += 1
    expected["/metrics/prometheus", "local", "2xx", ""] += 1  # the first scrape
    expected["/metrics", "local", "2xx", ""] += 1
    after = scrape(client)
    after_json = client.get("/metrics").json()

    labels = ("route", "family", "status_class", "model")
    grown = {
        k: delta(before, after, "codex_api_proxy_requests_total", **dict(zip(labels, k, strict=True)))
        for k in expected
    }
    assert grown == {key: float(n) for key, n in expected.items()}
    made = sum(expected.values())
    assert delta(before, after, "codex_api_proxy_requests_total") == made
    for histogram in ("request_duration_seconds", "time_to_first_byte_seconds", "proxy_overhead_seconds"):
        for family in ("responses", "chat", "anthropic", "local"):
            n = sum(v for k, v in expected.items() if k[1] == family)
            name = f"codex_api_proxy_{histogram}"
            assert delta(before, after, name + "_count", family=family) == n, (histogram, family)
            assert delta(before, after, name + "_bucket", family=family, le="+Inf") == n
    for model in MODELS.values():
        for kind, n in (("input", 100), ("cached_input", 40), ("output", 20), ("reasoning", 5)):
            assert delta(before, after, "codex_api_proxy_tokens_total", model=model, kind=kind) == 2 * n
    assert delta(before, after, "codex_api_proxy_upstream_errors_total", kind="status_500") == 6
    assert delta(before, after, "codex_api_proxy_upstream_errors_total", kind="rate_limit_exceeded") == 3
    assert delta(before, after, "codex_api_proxy_errors_by_status_total", status="500") == 6
    assert value(after, "codex_api_proxy_streams_in_flight") == 0

    # the JSON is the same registry: 0.1.6's keys, and this JSON scrape saw the text scrape before it
    assert after_json["requests_total"] - before_json["requests_total"] == made
    assert after_json["requests_total"] == delta({}, after, "codex_api_proxy_requests_total") + 1
    assert after_json["requests_ok"] + after_json["requests_error"] == after_json["requests_total"]
    assert after_json["errors_by_status"]["500"] - before_json["errors_by_status"].get("500", 0) == 6
    assert {"token_refresh_total", "models_cache_hits", "models_cache_misses", "uptime_seconds"} <= set(
        after_json
    )
    samples = after_json["metrics"]["tokens"]["samples"]
    assert {"name": "tokens_total", "labels": {"model": "gpt-5.5", "kind": "output"},
            "value": value(after, "codex_api_proxy_tokens_total", model="gpt-5.5", kind="output")} in samples  # fmt: skip


def test_models_cache_hits_and_misses(client: httpx.Client) -> None:
    before = scrape(client)
    assert client.get("/v1/models", params={"refresh": "1"}).status_code == 200
    assert client.get("/v1/models").status_code == 200
    after = scrape(client)
    assert delta(before, after, "codex_api_proxy_models_cache_misses_total") == 1
    assert delta(before, after, "codex_api_proxy_models_cache_hits_total") == 1
    assert delta(before, after, "codex_api_proxy_requests_total", route="/models", family="models") == 2


def test_client_hanging_up_mid_stream_is_counted_once_and_leaves_no_stream_in_flight(
    client: httpx.Client, obs: Proxy, fake: FakeBackend
) -> None:
    before = scrape(client)
    fake.enqueue(Turn(output=[text("a long answer " * 20, chunks=40)], delay=0.2))
    with httpx.stream("POST", obs.v1 + "/responses", json={"model": "gpt-5.5", "input": "hi", "stream": True},
                      trust_env=False, timeout=30) as r:  # fmt: skip
        assert r.status_code == 200
        chunks = r.iter_raw()  # kept: a dropped iterator would close the response
        next(chunks)
        during = scrape(client)
        assert value(during, "codex_api_proxy_streams_in_flight") == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = scrape(client)
        if delta(before, after, "codex_api_proxy_requests_total", status_class="aborted") >= 1:
            break
        time.sleep(0.2)
    assert value(after, "codex_api_proxy_streams_in_flight") == 0
    assert delta(before, after, "codex_api_proxy_requests_total", route="/responses") == 1
    assert (
        delta(before, after, "codex_api_proxy_requests_total", route="/responses", status_class="aborted")
        == 1
    )


def test_request_id_round_trip(client: httpx.Client, fake: FakeBackend) -> None:
    fake.enqueue(Turn(output=[text("ok")]))
    r = post(client, "responses", False, **{"x-request-id": "client-id-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "client-id-1"
    # upstream, x-client-request-id is the conversation's thread id (as the Codex CLI sends it)
    sent = fake.responses_requests[-1].headers
    assert sent["x-client-request-id"] == sent["thread-id"] != "client-id-1"

    fake.enqueue(Turn(output=[text("ok")]))
    r = post(client, "anthropic", True, **{"x-correlation-id": "corr-2"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "corr-2"

    fake.enqueue(Turn.http_error(503))
    r = post(client, "chat", False)
    assert r.status_code == 503
    made = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)

    fake.enqueue(Turn(output=[text("ok")]))
    r = post(client, "chat", True)
    sent = fake.responses_requests[-1].headers
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert sent["x-client-request-id"] == sent["thread-id"] == sent["session-id"]

    seen = set()
    for r in (
        client.post("/v1/messages", content=b"[]", headers={"x-request-id": "bad-body-3", **JSON_TYPE}),
        client.get("/v1/nowhere", headers={"x-request-id": "lost-4"}),
        client.get("/health", headers={"x-request-id": "local-5"}),
        client.get("/metrics", headers={"x-request-id": "local-6"}),
        client.get("/health"),
        client.get("/health", headers={"x-request-id": "no spaces\tor tabs"}),  # not taken as an id
    ):
        seen.add(r.headers["x-request-id"])
    assert {"bad-body-3", "lost-4", "local-5", "local-6"} <= seen and len(seen) == 6


QUOTA = ("x-codex-primary-used-percent", "x-codex-primary-window-minutes", "x-codex-secondary-used-percent",
         "x-codex-plan-type")  # fmt: skip


def test_quota_figures_in_health_metrics_and_on_every_answer(
    client: httpx.Client, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(fake.quota_headers, "x-codex-primary-used-percent", "42.5")
    fake.enqueue(Turn(output=[text("ok")]))
    r = post(client, "responses", True)
    assert r.headers["x-codex-primary-used-percent"] == "42.5"  # relayed with the stream
    quota = client.get("/health").json()["quota"]
    assert quota["primary"]["used_percent"] == 42.5 and quota["primary"]["window_minutes"] == 300
    assert 3500 <= quota["primary"]["reset_after_seconds"] <= 3600
    assert quota["secondary"]["used_percent"] == 34 and quota["secondary"]["window_minutes"] == 10080
    assert quota["plan_type"] == "plus" and quota["limit_reached"] is False
    samples = scrape(client)
    assert value(samples, "codex_api_proxy_quota_used_percent", window="primary") == 42.5
    assert value(samples, "codex_api_proxy_quota_used_percent", window="secondary") == 34
    assert value(samples, "codex_api_proxy_quota_window_minutes", window="secondary") == 10080
    assert value(samples, "codex_api_proxy_quota_info", plan_type="plus") == 1
    assert value(samples, "codex_api_proxy_quota_limit_reached") == 0

    # answers the gateway builds itself, and ones that never reach the upstream, carry them too
    fake.enqueue(Turn(output=[text("ok")]))
    for r in (
        post(client, "chat", False),
        post(client, "anthropic", False),
        client.post("/v1/responses", content=b"nope", headers=JSON_TYPE),
        client.get("/health"),
    ):
        assert all(name in r.headers for name in QUOTA), (r.request.url, r.headers)
        assert r.headers["x-codex-primary-used-percent"] == "42.5"

    fake.enqueue(Turn.usage_limit(resets_in_seconds=600))
    r = post(client, "anthropic", False)
    assert r.status_code == 429 and float(r.headers["x-codex-primary-used-percent"]) == 100
    quota = client.get("/health").json()["quota"]
    assert quota["limit_reached"] is True and quota["primary"]["used_percent"] == 100
    assert 500 <= quota["limit_reset_after_seconds"] <= 600
    assert value(scrape(client), "codex_api_proxy_quota_limit_reached") == 1
    fake.enqueue(Turn(output=[text("ok")]))
    assert post(client, "responses", False).status_code == 200
    assert client.get("/health").json()["quota"]["limit_reached"] is False
    exposed = (
        client.get("/metrics").text + client.get("/metrics/prometheus").text + client.get("/health").text
    )
    assert ACCOUNT_ID not in exposed and ACCESS_TOKEN not in exposed


def test_soak_counter_grows_by_the_requests_made(client: httpx.Client, obs: Proxy, fake: FakeBackend) -> None:
    """300 mixed requests at concurrency 16: every one is counted, once."""
    before = scrape(client)
    kinds = ["responses", "chat", "anthropic", "health", "missing", "bad"]

    def one(i: int) -> int:
        kind = kinds[i % len(kinds)]
        with httpx.Client(base_url=obs.url, timeout=120, trust_env=False) as c:
            if kind == "health":
                return c.get("/health").status_code
            if kind == "missing":
                return c.get("/v1/missing").status_code
            if kind == "bad":
                return c.post("/v1/messages", content=b"{", headers=JSON_TYPE).status_code
            return post(c, kind, stream=i % 4 < 2).status_code  # the fake answers a default turn

    with ThreadPoolExecutor(16) as pool:
        statuses = Counter(pool.map(one, range(300)))
    after = scrape(client)
    assert sum(statuses.values()) == 300
    assert delta(before, after, "codex_api_proxy_requests_total") == 300 + 1  # + the first scrape
    assert delta(before, after, "codex_api_proxy_request_duration_seconds_count") == 301
    assert value(after, "codex_api_proxy_streams_in_flight") == 0
    assert delta(before, after, "codex_api_proxy_requests_total", status_class="2xx") == statuses[200] + 1


@pytest.fixture(scope="module")
def keyed(backend: FakeBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    p = start_proxy(
        tmp_path_factory.mktemp("obs-keyed"), backend, env={"CODEX_API_PROXY_API_KEY": "metrics-key-9"}
    )
    yield p
    p.stop()


def test_metrics_obey_the_local_key_and_count_its_refusals(keyed: Proxy) -> None:
    key = {"authorization": "Bearer metrics-key-9"}
    with httpx.Client(base_url=keyed.url, timeout=30, trust_env=False) as c:
        for path in ("/metrics", "/metrics/prometheus"):
            r = c.get(path, headers={"x-request-id": "denied-7"})
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            assert r.headers["x-request-id"] == "denied-7"
        before = scrape(c, key)
        assert c.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"}).status_code == 401
        after = scrape(c, key)
        body = json.dumps(c.get("/metrics", headers=key).json())
    assert delta(before, after, "codex_api_proxy_requests_total", route="/responses", status_class="4xx") == 1
    assert delta(before, after, "codex_api_proxy_errors_by_status_total", status="401") == 1
    assert "metrics-key-9" not in body and ACCOUNT_ID not in body


def test_status_shows_the_quota(tmp_path: Path, fake: FakeBackend) -> None:
    from .conftest import free_port, write_auth
    from .test_cli import cli

    write_auth(tmp_path / "codex-home")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "CODEX_HOME": str(tmp_path / "codex-home"),
           "CODEX_API_PROXY_STATE_DIR": str(tmp_path / "state"), "CODEX_API_PROXY_UPSTREAM_URL": fake.url,
           "CODEX_API_PROXY_PORT": str(port)}  # fmt: skip
    assert cli("start", env=env).returncode == 0
    try:
        fake.enqueue(Turn(output=[text("ok")]))
        r = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={"model": "gpt-5.5", "input": "hi"},
                       trust_env=False, timeout=30)  # fmt: skip
        assert r.status_code == 200
        out = cli("status", env=env).stdout
    finally:
        cli("stop", env=env)
    assert "quota (plus): primary 12% of 300 min, resets in 60 min; secondary 34% of 10080 min" in out, out


def test_mitmproxy_event_log_only_at_debug(obs: Proxy, backend: FakeBackend, tmp_path: Path) -> None:
    quiet = start_proxy(tmp_path, backend, log_level="info")
    try:
        for p in (quiet, obs):
            assert (
                httpx.get(
                    p.url + "/health", headers={"x-request-id": "logged-8"}, trust_env=False
                ).status_code
                == 200
            )
    finally:
        quiet.stop()
    assert (
        "logged-8 GET /health local" in quiet.log() and "status=200" in quiet.log()
    )  # our line, with the id
    assert not re.search(r"(DEBUG|INFO) mitmproxy", quiet.log()) and "client connect" not in quiet.log()
    assert "mitmproxy.proxy.server: client connect" in obs.log()  # the obs proxy runs at debug


def test_api_key_mode_counts_tokens_of_passed_through_answers(tmp_path: Path) -> None:
    """The OpenAI API's answers go to clients unchanged; their usage is still counted, by model."""
    from .conftest import write_auth

    key = "sk-test-metrics-apikey"
    with FakeBackend(access_tokens=set(), api_keys={key}) as api:
        write_auth(tmp_path / "codex-home", api_key=key)
        p = start_proxy(tmp_path, api)
        try:
            with httpx.Client(base_url=p.url, timeout=60, trust_env=False) as c:
                before = scrape(c)
                chat = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}
                for body in ({**chat}, {**chat, "stream": True, "stream_options": {"include_usage": True}}):
                    api.enqueue(Turn(output=[text("ok")], usage=USAGE))
                    assert c.post("/v1/chat/completions", json=body).status_code == 200
                for stream in (False, True):
                    api.enqueue(Turn(output=[text("ok")], usage=USAGE))
                    r = c.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi", "stream": stream})
                    assert r.status_code == 200
                after = scrape(c)
        finally:
            p.stop()
    for model in ("gpt-5.4", "gpt-5.5"):
        for kind, n in (("input", 100), ("cached_input", 40), ("output", 20), ("reasoning", 5)):
            assert delta(before, after, "codex_api_proxy_tokens_total", model=model, kind=kind) == 2 * n


def test_unreachable_upstream_is_an_upstream_error_of_its_kind(tmp_path: Path, backend: FakeBackend) -> None:
    from .conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/backend-api/codex"  # nothing listens there
    p = start_proxy(tmp_path, backend, env={"CODEX_API_PROXY_UPSTREAM_URL": dead})
    try:
        with httpx.Client(base_url=p.url, timeout=60, trust_env=False) as c:
            before = scrape(c)
            for stream in (False, True):
                r = post(c, "anthropic", stream, **{"x-request-id": f"dead-{stream}"})
                assert r.status_code == 502 and r.json()["error"]["type"] == "api_error"
                assert r.headers["x-request-id"] == f"dead-{stream}"
            after = scrape(c)
    finally:
        p.stop()
    assert delta(before, after, "codex_api_proxy_upstream_errors_total", kind="upstream_unreachable") == 2
    assert delta(before, after, "codex_api_proxy_requests_total", route="/messages", status_class="5xx") == 2
