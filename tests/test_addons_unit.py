"""The addons' hooks one at a time, with mitmproxy's own test helpers (taddons, tflow): option checks,
the boundary's refusals, the local endpoints, the gateway's 404 and 405, the quota and the request ids
and metrics. The end-to-end tests run the same addons in the real proxy process; these say which hook
does what, in milliseconds and without sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from codex_api_proxy.core.options import ADDON_OPTIONS
from codex_api_proxy.proxy import observe
from codex_api_proxy.proxy.boundary import Boundary
from codex_api_proxy.proxy.endpoints import LocalEndpoints
from codex_api_proxy.proxy.gateway import FAMILIES, ApiGateway
from codex_api_proxy.proxy.options import ProxyOptions
from codex_api_proxy.proxy.quota import Quota
from codex_api_proxy.proxy.runtime import Runtime
from codex_api_proxy.relay.exchange import FlowState, set_flow_state
from codex_api_proxy.translate.base import RequestContext

LOOPBACK = {"mode": ["reverse:http://127.0.0.1:9@8765"], "listen_host": "127.0.0.1"}


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Runtime:
    for opt in ADDON_OPTIONS:  # the option defaults read the environment
        monkeypatch.delenv(opt.env or "", raising=False)
    monkeypatch.delenv("CODEX_API_PROXY_API_KEY", raising=False)
    return Runtime()


@pytest.fixture
def tctx(runtime: Runtime) -> Iterator[taddons.context]:
    """The options addon loaded and configured at its defaults, on loopback."""
    options = ProxyOptions(runtime)
    with taddons.context(options) as tctx:
        tctx.configure(options, **LOOPBACK)
        yield tctx


def flow(method: str = "GET", path: str = "/v1/models", headers: dict[str, str] | None = None,
         body: bytes = b"") -> http.HTTPFlow:  # fmt: skip
    fields = {"host": "127.0.0.1:8765", **(headers or {})}
    if body:
        fields["content-length"] = str(len(body))
    req = tutils.treq(method=method.encode(), path=path.encode(), content=body,
                      headers=http.Headers([(k.encode(), v.encode()) for k, v in fields.items()]))  # fmt: skip
    return tflow.tflow(req=req)


def error_of(f: http.HTTPFlow) -> dict[str, Any]:
    assert f.response is not None and f.response.headers["content-type"] == "application/json"
    return json.loads(f.response.content or b"")


# -- options ------------------------------------------------------------------------------------------


def test_options_build_settings_from_the_table(tctx: taddons.context, runtime: Runtime) -> None:
    options = tctx.master.addons.get("proxyoptions")
    tctx.configure(
        options, codex_heartbeat="2.5", codex_model_map="opus=gpt-5.4", codex_expose_reasoning=True
    )
    s = runtime.settings
    assert (s.heartbeat, s.model_map, s.expose_reasoning) == (2.5, {"opus": "gpt-5.4"}, True)
    assert s.idle_timeout == 300.0 and s.upstream_url == "https://chatgpt.com/backend-api/codex"


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("codex_heartbeat", "0", "positive number of seconds"),
        ("codex_idle_timeout", "soon", "not a number of seconds"),
        ("codex_connect_timeout", "inf", "seconds"),
        ("codex_models_cache_ttl", "-1", "number of seconds"),
        ("codex_upstream_url", "ftp://x", "not a URL like https://"),
        ("codex_outbound_proxy", "nohost", "not a URL"),
        ("codex_model_map", "opus", "not family=model"),
    ],
)
def test_a_bad_option_names_itself_and_keeps_the_old_settings(
    tctx: taddons.context, runtime: Runtime, option: str, value: str, says: str
) -> None:
    before = runtime.settings
    with pytest.raises(exceptions.OptionsError, match=f"{option}: .*{says}"):
        tctx.configure(tctx.master.addons.get("proxyoptions"), **{option: value})
    assert runtime.settings == before  # the rollback configured the old values again


def test_models_cache_ttl_may_be_zero(tctx: taddons.context, runtime: Runtime) -> None:
    tctx.configure(tctx.master.addons.get("proxyoptions"), codex_models_cache_ttl="0")
    assert runtime.settings.models_cache_ttl == 0


def test_a_public_bind_without_a_key_is_refused(tctx: taddons.context) -> None:
    with pytest.raises(exceptions.OptionsError, match="without a local API key"):
        tctx.configure(tctx.master.addons.get("proxyoptions"), listen_host="0.0.0.0")


def test_an_unreadable_key_file_is_an_option_error(tctx: taddons.context, tmp_path: Any) -> None:
    with pytest.raises(exceptions.OptionsError, match="codex_api_key_file"):
        tctx.configure(tctx.master.addons.get("proxyoptions"), codex_api_key_file=str(tmp_path / "none"))


def test_the_variable_is_the_default_under_mitmdump(
    monkeypatch: pytest.MonkeyPatch, runtime: Runtime
) -> None:
    monkeypatch.setenv("CODEX_API_PROXY_HEARTBEAT", "7")
    options = ProxyOptions(runtime)
    with taddons.context(options) as tctx:
        assert tctx.options.codex_heartbeat == "7"
        tctx.configure(options, **LOOPBACK)
    assert runtime.settings.heartbeat == 7.0


# -- boundary -----------------------------------------------------------------------------------------


def refused(runtime: Runtime, f: http.HTTPFlow) -> http.HTTPFlow:
    Boundary(runtime).requestheaders(f)
    return f


def test_boundary_refuses_a_foreign_host_in_the_clients_envelope(
    tctx: taddons.context, runtime: Runtime
) -> None:
    f = refused(runtime, flow(headers={"host": "evil.example"}))
    assert f.response is not None and f.response.status_code == 403
    assert error_of(f)["error"]["code"] == "host_not_allowed"
    m = refused(
        runtime, flow("POST", "/v1/messages", {"host": "evil.example", "content-type": "application/json"})
    )
    assert error_of(m) == {
        "type": "error",
        "error": {"type": "permission_error", "message": error_of(m)["error"]["message"]},
    }


def test_boundary_refuses_web_pages_and_forms(tctx: taddons.context, runtime: Runtime) -> None:
    page = refused(runtime, flow(headers={"origin": "https://evil.example"}))
    assert page.response is not None and page.response.status_code == 403
    form = refused(runtime, flow("POST", "/v1/chat/completions", {"content-type": "text/plain"}))
    assert form.response is not None and form.response.status_code == 415


def test_boundary_checks_the_key_except_on_open_routes(
    tctx: taddons.context, runtime: Runtime, tmp_path: Any
) -> None:
    (tmp_path / "key").write_text("k\n")
    (tmp_path / "key").chmod(0o600)
    options = tctx.master.addons.get("proxyoptions")
    tctx.configure(options, codex_api_key_file=str(tmp_path / "key"), listen_host="0.0.0.0")
    missing = refused(runtime, flow())
    assert missing.response is not None and missing.response.status_code == 401
    assert refused(runtime, flow(headers={"x-api-key": "k"})).response is None
    assert refused(runtime, flow(headers={"authorization": "Bearer k"})).response is None
    assert refused(runtime, flow("HEAD", "/")).response is None  # open: liveness
    assert refused(runtime, flow("GET", "/health")).response is None


def test_boundary_answers_an_allowed_preflight(tctx: taddons.context, runtime: Runtime) -> None:
    tctx.configure(tctx.master.addons.get("proxyoptions"), codex_allow_origin="http://localhost:3000")
    f = refused(runtime, flow("OPTIONS", "/v1/messages", {"origin": "http://localhost:3000"}))
    assert f.response is not None and f.response.status_code == 204
    assert f.response.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_boundary_refuses_a_declared_body_over_the_limit(tctx: taddons.context, runtime: Runtime) -> None:
    f = flow("POST", "/v1/responses", {"content-type": "application/json"})
    f.request.headers["content-length"] = str(1 << 40)
    refused(runtime, f)
    assert f.response is not None and f.response.status_code == 413


# -- endpoints and gateway ----------------------------------------------------------------------------


async def test_endpoints_answer_local_routes_only(tctx: taddons.context, runtime: Runtime) -> None:
    endpoints = LocalEndpoints(runtime)
    health = flow("GET", "/health?x=1")
    await endpoints.request(health)
    assert health.response is not None and json.loads(health.response.content or b"")["ok"] is True
    head = flow("HEAD", "/")
    await endpoints.request(head)
    assert head.response is not None and head.response.status_code == 200 and head.response.content == b""
    for path in ("/v1/models", "/v1/nowhere"):
        other = flow("GET", path)
        await endpoints.request(other)
        assert other.response is None  # the gateway's


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/chat/completions", 405),
        ("POST", "/v1/models", 405),
        ("POST", "/health", 405),
        ("GET", "/v1/nowhere", 404),
        ("POST", "/v1/chat/completion", 404),
    ],
)
async def test_gateway_refuses_what_has_no_route(
    tctx: taddons.context, runtime: Runtime, method: str, path: str, status: int
) -> None:
    f = flow(method, path, {"content-type": "application/json"}, b"{}")
    await ApiGateway(runtime).request(f)
    assert f.response is not None and f.response.status_code == status
    assert method in error_of(f)["error"]["message"]


async def test_gateway_refuses_a_responses_websocket_with_426(
    tctx: taddons.context, runtime: Runtime
) -> None:
    f = flow("GET", "/v1/responses", {"upgrade": "websocket", "connection": "upgrade"})
    await ApiGateway(runtime).request(f)
    assert f.response is not None and f.response.status_code == 426


async def test_gateway_answers_a_bad_body_in_the_families_envelope(
    tctx: taddons.context, runtime: Runtime
) -> None:
    f = flow("POST", "/v1/messages/count_tokens", {"content-type": "application/json"}, b"{nope")
    await ApiGateway(runtime).request(f)
    assert f.response is not None and f.response.status_code == 400
    assert error_of(f)["type"] == "error" and error_of(f)["error"]["type"] == "invalid_request_error"


# -- quota, ids, metrics ------------------------------------------------------------------------------


def test_quota_reads_relayed_answers_and_passes_the_figures_on(
    tctx: taddons.context, runtime: Runtime
) -> None:
    quota = Quota(runtime)
    upstream = flow("POST", "/v1/responses")
    set_flow_state(upstream, FlowState(FAMILIES["responses"], RequestContext(), passthrough=False))
    upstream.response = tutils.tresp(headers=http.Headers([(b"x-codex-primary-used-percent", b"42"),
                                                           (b"x-codex-plan-type", b"plus")]))  # fmt: skip
    quota.responseheaders(upstream)
    local = tflow.tflow(req=flow("GET", "/health").request, resp=True)
    quota.responseheaders(local)  # not relayed: read nothing from it
    quota.response(local)
    assert local.response is not None and local.response.headers["x-codex-primary-used-percent"] == "42"
    assert any(f.name.endswith("quota_used_percent") for f in quota.gauges())


def test_request_ids_come_back_to_the_client(tctx: taddons.context) -> None:
    ids = observe.RequestIds()
    given = flow(headers={"x-request-id": "abc-1"})
    ids.requestheaders(given)
    assert observe.request_id(given) == "abc-1"
    given.response = tutils.tresp()
    ids.response(given)
    assert given.response.headers["x-request-id"] == "abc-1"
    made = flow(headers={"x-request-id": "no spaces allowed"})
    ids.requestheaders(made)
    assert len(observe.request_id(made)) == 32


def test_metrics_count_each_flow_once_under_its_route(tctx: taddons.context, runtime: Runtime) -> None:
    metrics = observe.RequestMetrics(runtime)

    def counted(route: str, family: str) -> float:
        return (
            runtime.metrics.registry.get_sample_value(
                "codex_api_proxy_requests_total",
                {"route": route, "family": family, "status_class": "2xx", "model": ""},
            )
            or 0.0
        )

    f = flow("GET", "/v1/models/gpt-5.5")
    metrics.requestheaders(f)
    metrics.request(f)
    f.response = tutils.tresp()
    metrics.response(f)
    metrics.error(f)  # a flow that sees both hooks is still one request
    assert counted("/models/{id}", "models") == 1
    other = flow("GET", "/v1/anything/you/like")
    metrics.requestheaders(other)
    other.response = tutils.tresp()
    metrics.response(other)
    assert counted("other", "other") == 1
