"""The mitmproxy addons: options, local auth, local endpoints, and the translating API gateway.

One class per concern, in the order mitmproxy runs them; each `request` hook leaves a flow alone once
an earlier one has answered it. Hooks only route and delegate: translation lives in `translate/`,
transport in `relay`. Every hook fails closed: an exception answers the client with a JSON error, and
no flow is ever forwarded untranslated (the reverse target is a dead port on top of that).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import resource
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.mode_specs import ProxyMode

from . import __version__, boundary, cache_health, models, observe
from .backend import Backend
from .conversations import ConversationStore, conversation_headers
from .credentials import Credentials, wait_for_refreshes
from .errors import ProxyError, bad_request
from .exchange import Family, FlowState, error_body
from .metrics import CONTENT_TYPE as METRICS_TEXT
from .metrics import Metrics
from .quota import Quota, QuotaBook
from .relay import FLOW_HEADER, Canned, RelayServer
from .relay import MAX_BODY as RELAY_MAX_BODY
from .settings import (
    API_KEY_ENV,
    DEFAULT_OPENAI_URL,
    DEFAULT_UPSTREAM_URL,
    OPENAI_URL_ENV,
    UPSTREAM_URL_ENV,
    Settings,
    default_auth_path,
    is_loopback,
    parse_model_map,
    read_api_key,
)
from .translate import anthropic, chat, compact, responses
from .translate.base import RequestContext

log = logging.getLogger("codex_api_proxy")

JSON = {"content-type": "application/json"}
REFUSED = "codex_api_proxy.refused"  # flow.metadata: the boundary answered this flow
ORIGIN = "codex_api_proxy.origin"  # flow.metadata: an allowed browser origin, for the CORS answer
INSPECT_LIMIT = 64 << 10  # of a client's request kept in the flow's comment for mitmweb
BODY_SIZE_LIMIT = f"{RELAY_MAX_BODY >> 20}m"  # mitmproxy's own cut for bodies of no declared length
# Client headers worth keeping upstream: conversation identity and Codex CLI's own metadata.
_FORWARDED_HEADERS = ("session_id", "session-id", "thread-id", "x-client-request-id", "originator")
_FORWARDED_PREFIXES = ("x-codex-",)


def route_path(path: str) -> str:
    """`/v1/x?q` and `/x` are the same route; the query is ignored (Claude Code adds ?beta=true)."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    return path[3:] or "/" if path.startswith("/v1/") or path == "/v1" else path


def is_anthropic_path(path: str) -> bool:
    return route_path(path).startswith("/messages")


def error_response(error: ProxyError, anthropic_dialect: bool) -> http.Response:
    return http.Response.make(error.status, error_body(error, anthropic_dialect), {**JSON, **error.headers()})


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> http.Response:
    return http.Response.make(status, json.dumps(body), {**JSON, **(headers or {})})


@dataclass
class Runtime:
    """What the addons of one proxy share: settings, credentials, the upstream and the counters."""

    settings: Settings = field(default_factory=Settings)
    credentials: Credentials = field(default_factory=Credentials)
    metrics: Metrics = field(default_factory=Metrics)
    backend: Backend | None = None
    quota: QuotaBook = field(default_factory=QuotaBook)
    relay: RelayServer | None = None
    models: models.ModelCache = field(default_factory=lambda: models.ModelCache(300))
    conversations: ConversationStore = field(default_factory=ConversationStore.from_env)
    policy: boundary.Policy = field(default_factory=boundary.Policy)
    restarting: asyncio.Task[None] | None = None
    configured: bool = False  # settings were built from the options at least once
    inspecting: bool = False  # mitmweb keeps bodies: flows also carry the client's original request

    async def start_transport(self) -> None:
        self.backend = Backend(self.settings, self.credentials)
        self.relay = RelayServer(self.backend, self.settings.heartbeat)
        await self.relay.start()

    async def stop_transport(self) -> None:
        if self.relay:
            await self.relay.stop()
        await wait_for_refreshes()  # a sent refresh needs the upstream client to get and save its answer
        if self.backend:
            await self.backend.aclose()

    async def restart_transport(self) -> None:
        await self.stop_transport()
        await self.start_transport()


def fail_closed(hook: Callable[..., Awaitable[None] | None]) -> Callable[..., Awaitable[None]]:
    """mitmproxy forwards a flow unmodified when a hook raises: answer with a JSON error instead."""

    @functools.wraps(hook)
    async def wrapper(self: Any, flow: http.HTTPFlow) -> None:
        try:
            result = hook(self, flow)
            if asyncio.iscoroutine(result):
                await result
        except ProxyError as error:
            flow.response = error_response(error, is_anthropic_path(flow.request.path))
        except Exception:
            log.exception("%s hook failed for %s", hook.__name__, route_path(flow.request.path))
            error = ProxyError(500, "codex-api-proxy failed to handle this request", code="internal_error")
            flow.response = error_response(error, is_anthropic_path(flow.request.path))

    return wrapper


def _seconds(options: Any, name: str) -> float:
    """A duration option: a positive number of seconds (cache TTL: 0 allowed)."""
    try:
        value = float(getattr(options, name))
    except ValueError:
        raise exceptions.OptionsError(
            f"{name} must be a number of seconds, not {getattr(options, name)!r}"
        ) from None
    if (value <= 0 and name != "codex_models_cache_ttl") or value != value or value == float("inf"):
        raise exceptions.OptionsError(f"{name} must be a positive number of seconds")
    return value


def _items(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def bind_hosts(options: Any) -> list[str]:
    """The addresses the proxy listens on ('' = every interface), from mitmproxy's own options."""
    hosts = []
    for spec in getattr(options, "mode", None) or []:
        try:
            hosts.append(ProxyMode.parse(spec).listen_host(options.listen_host).lower())
        except ValueError:
            continue  # mitmproxy reports a bad mode itself
    return hosts


def check_bind(options: Any, settings: Settings) -> None:
    """Refuse to serve a subscription beyond this machine without a key, under mitmdump/mitmweb too."""
    if settings.api_key:
        return
    for host in bind_hosts(options):
        if not is_loopback(host):
            raise exceptions.OptionsError(
                f"refusing to listen on {host or 'every interface'} without a local API key: set "
                f"{API_KEY_ENV} (or --api-key-file), or listen on 127.0.0.1"
            )


class ProxyOptions:
    """Declares the proxy's options and turns them into one validated `Settings`."""

    WATCHED = frozenset({"mode", "listen_host", "store_streamed_bodies"})  # bind: key needed?
    SECONDS = (
        "codex_connect_timeout",
        "codex_first_byte_timeout",
        "codex_idle_timeout",
        "codex_heartbeat",
        "codex_models_cache_ttl",
    )

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def load(self, loader: Any) -> None:
        add = loader.add_option
        add(
            "codex_upstream_url",
            str,
            os.environ.get(UPSTREAM_URL_ENV) or DEFAULT_UPSTREAM_URL,
            "ChatGPT Codex backend base URL (generation: POST {base}/responses).",
        )
        add(
            "codex_openai_url",
            str,
            os.environ.get(OPENAI_URL_ENV) or DEFAULT_OPENAI_URL,
            "OpenAI API base URL, used when auth.json holds an OPENAI_API_KEY.",
        )
        add(
            "codex_auth_file",
            str,
            "",
            "auth.json to use (default: $CODEX_HOME/auth.json or ~/.codex/auth.json).",
        )
        add(
            "codex_api_key_file",
            str,
            "",
            f"File holding the local API key clients must present (or set {API_KEY_ENV}). Never pass keys in argv.",
        )
        add(
            "codex_outbound_proxy",
            str,
            "",
            "Outbound HTTP(S) proxy (default: HTTPS_PROXY etc. and NO_PROXY).",
        )
        # seconds are strings: mitmproxy's --set cannot parse a float option (mitmdump/mitmweb users)
        add("codex_connect_timeout", str, "15", "Seconds to connect to the upstream.")
        add("codex_first_byte_timeout", str, "300", "Seconds to wait for the upstream's response headers.")
        add("codex_idle_timeout", str, "300", "Seconds of upstream silence inside a stream before it fails.")
        add("codex_heartbeat", str, "10", "Seconds of upstream silence between keep-alives to clients.")
        add("codex_models_cache_ttl", str, "300", "Seconds a model listing is cached (0: never).")
        add("codex_model_map", str, "", "Claude family -> GPT model, e.g. 'opus=gpt-5.5,haiku=gpt-5.4-mini'.")
        add("codex_expose_reasoning", bool, False, "Give Chat Completions clients reasoning summaries.")
        add(
            "codex_allow_origin",
            str,
            "",
            "Web origins (scheme://host[:port], comma-separated) allowed to call the proxy from a browser; "
            "none by default.",
        )
        add(
            "codex_allow_host",
            str,
            "",
            "Host names (comma-separated) clients may use beyond loopback and the bound address.",
        )

    def configure(self, updated: set[str]) -> None:
        # mitmproxy calls configure only for options that changed: a start with every codex_* option at
        # its default must still build (and enforce) the settings, the key from the environment included
        if (
            self.runtime.configured
            and not updated & self.WATCHED
            and not any(name.startswith("codex_") for name in updated)
        ):
            return
        o = ctx.options
        try:
            api_key = read_api_key(o.codex_api_key_file) if o.codex_api_key_file else None
            model_map = parse_model_map(o.codex_model_map)
        except (OSError, ValueError) as exc:
            raise exceptions.OptionsError(str(exc)) from None
        seconds = {name: _seconds(o, name) for name in self.SECONDS}
        if seconds["codex_models_cache_ttl"] < 0:
            raise exceptions.OptionsError("codex_models_cache_ttl must not be negative")
        settings = Settings(
            upstream_url=o.codex_upstream_url.rstrip("/"),
            openai_url=o.codex_openai_url.rstrip("/"),
            auth_path=Path(o.codex_auth_file).expanduser() if o.codex_auth_file else default_auth_path(),
            api_key=api_key or os.environ.get(API_KEY_ENV) or None,
            outbound_proxy=o.codex_outbound_proxy or None,  # else httpx reads HTTPS_PROXY/NO_PROXY itself
            connect_timeout=seconds["codex_connect_timeout"],
            first_byte_timeout=seconds["codex_first_byte_timeout"],
            idle_timeout=seconds["codex_idle_timeout"],
            heartbeat=seconds["codex_heartbeat"],
            models_cache_ttl=seconds["codex_models_cache_ttl"],
            model_map=model_map,
            expose_reasoning=o.codex_expose_reasoning,
        )
        check_bind(o, settings)
        rt = self.runtime
        rt.configured = True
        rt.inspecting = bool(getattr(o, "store_streamed_bodies", False))
        rt.policy = boundary.Policy(
            api_key=settings.api_key,
            allowed_origins=frozenset(x.rstrip("/").lower() for x in _items(o.codex_allow_origin)),
            allowed_hosts=frozenset(boundary.host_of(x) for x in _items(o.codex_allow_host)),
            bind_hosts=frozenset(bind_hosts(o)),
        )
        rt.settings = settings
        # a client waits for a token refresh as long as for the upstream's first byte; the refresh goes on
        rt.credentials = Credentials(settings.auth_path, refresh_wait=settings.first_byte_timeout)
        rt.models = models.ModelCache(settings.models_cache_ttl)
        if rt.backend:  # options changed while running (mitmweb): rebuild the transport
            rt.restarting = asyncio.get_running_loop().create_task(rt.restart_transport())


def raise_fd_limit() -> None:
    """Each client holds two sockets (its own and the relay's) plus one upstream: the default soft
    limit of 1,024 descriptors locks every client out at a few hundred idle connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.debug("could not raise the file descriptor limit from %d", soft)


class OncePerInterval(logging.Filter):
    """Lets a repeated message (asyncio's accept failure, once per attempt) through once a minute."""

    def __init__(self, text: str, interval: float = 60.0) -> None:
        super().__init__()
        self.text, self.interval, self.last, self.dropped = text, interval, -interval, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self.last < self.interval:
            self.dropped += 1
            return False
        if self.dropped:
            record.msg = f"{record.msg} ({self.dropped} more like it in the last minute)"
        self.last, self.dropped = now, 0
        return True


class UpstreamRelay:
    """Owns the pooled upstream client and the loopback relay server for the life of the proxy."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def running(self) -> None:
        if ctx.options.body_size_limit is None:  # under mitmdump/mitmweb: bound chunked uploads too
            ctx.options.update(body_size_limit=BODY_SIZE_LIMIT)
        if not ctx.options.keep_host_header:  # else reverse mode replaces the Host the boundary checks
            ctx.options.update(keep_host_header=True)
        raise_fd_limit()
        logging.getLogger("asyncio").addFilter(OncePerInterval("socket.accept() out of system resource"))
        await self.runtime.start_transport()
        log.info("codex-api-proxy %s ready; upstream %s", __version__, self.runtime.settings.upstream_url)

    async def done(self) -> None:
        await self.runtime.stop_transport()


def to_relay(flow: http.HTTPFlow, port: int, headers: dict[str, str]) -> None:
    """Point the flow at the relay with exactly these headers, keeping the client's path (mitmweb
    lists it by what the client called). Set on the request's data: the url setter re-parses."""
    data = flow.request.data
    data.scheme, data.host, data.port = b"http", "127.0.0.1", port
    fields = [(b"host", b"127.0.0.1:%d" % port)]
    fields += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k != "host"]
    flow.request.headers = http.Headers(fields)


def handled(flow: http.HTTPFlow) -> bool:
    """Answered already, or refused by the boundary (whose answer may still be on its way)."""
    return flow.response is not None or REFUSED in flow.metadata


def _discard(chunk: bytes) -> list[bytes]:
    """The body of a refused request: read from the client (it may still be sending) and dropped."""
    return []


class Boundary:
    """Refuses, on the head and before any body is read, what may not reach the subscription
    (boundary.py says what and why): the local key, Host, Origin, content type, declared size."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            path = route_path(flow.request.path)
            headers, error = boundary.check_head(
                self.runtime.policy, flow.request.method, path, flow.request.headers.fields
            )
            if error is None:
                origin = headers.get("origin")
                if origin is not None:
                    flow.metadata[ORIGIN] = origin
                    if flow.request.method == "OPTIONS":
                        flow.response = http.Response.make(204, b"", boundary.preflight_headers(origin))
                return
        except Exception:
            log.exception("boundary check failed")
            error = ProxyError(500, "codex-api-proxy failed to check this request", code="internal_error")
        log.info("refused %s %s: %s", flow.request.method, flow.request.path[:200], error.message)
        self.refuse(flow, error)

    def response(self, flow: http.HTTPFlow) -> None:
        self.done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.done(flow)

    def done(self, flow: http.HTTPFlow) -> None:
        """A refused flow's canned answer is dropped if mitmproxy never sent the flow to the relay."""
        if REFUSED in flow.metadata and self.runtime.relay is not None:
            self.runtime.relay.forget(flow.id)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """CORS headers, for the origins the person allowed (no others get this far)."""
        origin = flow.metadata.get(ORIGIN)
        if origin and flow.response is not None:
            flow.response.headers.update(boundary.cors_headers(origin))

    def refuse(self, flow: http.HTTPFlow, error: ProxyError) -> None:
        """Answer now. A request with a body would have it read (buffered) before mitmproxy sends an
        answer set here, so such a flow is streamed instead: its body dropped as it comes, its head
        sent on to the relay, which answers with this error at once."""
        response = error_response(error, is_anthropic_path(flow.request.path))
        request = flow.request
        has_body = (
            request.headers.get("content-length", "0") not in ("", "0")
            or "transfer-encoding" in request.headers
        )
        relay = self.runtime.relay
        if not has_body or relay is None:
            flow.response = response
            return
        relay.expect(flow.id, Canned(response.status_code, dict(response.headers), response.content or b""))
        request.stream = _discard
        to_relay(flow, relay.port, {"content-length": "0", FLOW_HEADER: flow.id})
        flow.metadata[REFUSED] = error


class LocalEndpoints:
    """Answers that need no upstream: liveness, readiness, metrics, Claude Code's probes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if handled(flow):
            return
        path, method = route_path(flow.request.path), flow.request.method
        rt = self.runtime
        if path == "/health" and method in ("GET", "HEAD"):
            flow.response = json_response(
                200,
                {
                    "ok": True,
                    "version": __version__,
                    "uptime_seconds": round(rt.metrics.uptime(), 3),
                    "quota": rt.quota.as_json(rt.credentials.account_id or ""),
                },
            )
        elif path == "/" and method in ("GET", "HEAD"):
            flow.response = json_response(200, {"ok": True, "service": "codex-api-proxy"})
        if flow.response and method == "HEAD":
            flow.response.content = b""  # a HEAD answer has headers only
        elif path.startswith("/api/event_logging/") and method == "POST":
            flow.response = json_response(200, {})
        elif path == "/ready" and method == "GET":
            flow.response = self.ready()
        elif path == "/metrics" and method == "GET":
            flow.response = json_response(200, rt.metrics.json())
        elif path == "/metrics/prometheus" and method == "GET":
            flow.response = http.Response.make(200, rt.metrics.text(), {"content-type": METRICS_TEXT})

    def ready(self) -> http.Response:
        rt = self.runtime
        try:
            info = rt.credentials.describe()
        except ProxyError as error:
            return json_response(503, {"ok": False, "error": error.message, "code": error.code})
        upstream = rt.settings.upstream_url if info.get("mode") == "chatgpt" else rt.settings.openai_url
        return json_response(200, {"ok": True, **info, "upstream": upstream})


FAMILIES = {
    "/responses": Family("responses", responses, passthrough_path="responses"),
    "/chat/completions": Family("chat", chat, passthrough_path="chat/completions"),
    "/messages": Family("anthropic", anthropic, anthropic=True),
    "/responses/compact": Family(
        "compact",
        compact,
        passthrough_path="responses/compact",
        upstream_path="responses/compact",
        unary=True,
    ),
}


class ApiGateway:
    """Routes the API families: translate the request and hand the flow to the relay.

    The relay's exchange does the rest (upstream call, the answer translated back); this addon only
    marks streamed answers as streams so mitmproxy forwards them as they come, and tells the relay
    when a flow is over, so a client that left stops its upstream request.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        if handled(flow):
            return
        path, method = route_path(flow.request.path), flow.request.method
        family = FAMILIES.get(path)
        if path == "/responses" and method == "GET":
            responses.refuse_websocket(flow.request.headers)  # 426: clients fall back to HTTP at once
        if family and method == "POST":
            await self.translate_request(flow, family)
        elif path == "/messages/count_tokens" and method == "POST":
            body, _ = self.json_body(flow)
            headers = boundary.header_dict(flow.request.headers.fields)
            count = await asyncio.to_thread(anthropic.count_tokens, body, headers)
            flow.response = json_response(200, {"input_tokens": count})
        elif (path == "/models" or path.startswith("/models/")) and method == "GET":
            flow.response = await self.models_answer(flow, path[len("/models/") :] or None)
        elif family or path in ("/messages/count_tokens", "/models"):
            raise ProxyError(405, f"{method} is not allowed on {path}", code="method_not_allowed")
        else:
            raise ProxyError(404, f"no route for {method} {path}", code="not_found")

    @staticmethod
    def json_body(flow: http.HTTPFlow) -> tuple[dict[str, Any], bytes]:
        """The request's JSON object and its decoded bytes; every way it can be wrong is a 4xx."""
        raw = boundary.decoded_body(
            flow.request.raw_content or b"", flow.request.headers.get("content-encoding", "")
        )
        try:
            body = json.loads(raw)
        except RecursionError:
            raise bad_request("request body is nested too deeply", code="invalid_json") from None
        except ValueError:
            raise bad_request("request body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object", code="invalid_json")
        if b"\\ud" in raw or b"\\uD" in raw:  # an escaped surrogate: maybe a lone one, unencodable
            body = boundary.repair_surrogates(body)
        return body, raw

    def family_options(self, family: Family, account: str | None) -> dict[str, Any]:
        settings = self.runtime.settings
        if family.name == "anthropic":
            return {"model_map": settings.model_map}
        if family.name == "chat":
            return {"expose_reasoning": settings.expose_reasoning}
        return {responses.CONVERSATIONS: self.runtime.conversations.conversation(account)}

    async def translate_request(self, flow: http.HTTPFlow, family: Family) -> None:
        rt = self.runtime
        body, sent = self.json_body(flow)
        auth = await rt.credentials.get()
        client_headers = boundary.header_dict(flow.request.headers.fields)
        ctx = RequestContext(
            model=str(body.get("model") or ""),
            stream=bool(body.get("stream")),
            headers=client_headers,
            options=self.family_options(family, auth.account_id),
        )
        passthrough = auth.mode == "apikey" and family.passthrough_path is not None
        if passthrough:
            route, upstream_path, upstream_body = "openai", family.passthrough_path, body
        else:
            if family.anthropic and anthropic.is_probe(body):
                flow.response = json_response(200, anthropic.probe_response(body, ctx))
                return
            upstream_body = family.module.to_upstream(body, ctx)
            route = "codex" if auth.mode == "chatgpt" else "openai"
            upstream_path = family.upstream_path
            if route == "codex":  # an effort the model lacks would be a 400; the catalog says which
                models.clamp_body_effort(
                    upstream_body, rt.models.reasoning_levels(upstream_body.get("model"))
                )
        assert rt.relay is not None, "relay not running"
        headers = {
            k: v
            for k, v in client_headers.items()
            if k in _FORWARDED_HEADERS or k.startswith(_FORWARDED_PREFIXES)
        }
        if route == "codex":
            headers.setdefault(
                "originator", os.environ.get("CODEX_INTERNAL_ORIGINATOR_OVERRIDE", "codex_cli_rs")
            )
            headers = conversation_headers(headers, upstream_body.get("prompt_cache_key"))
        if not passthrough:
            key = upstream_body.get("prompt_cache_key")
            ctx.options["cache_thread"] = cache_health.HEALTH.note_request(key, upstream_body, headers)
        state = FlowState(
            family, ctx, passthrough, route, upstream_path, str(upstream_body.get("model") or "")
        )
        # the flow keeps the client's path, so mitmweb lists it as what the client called
        accept = (
            "text/event-stream"
            if (route == "codex" and not family.unary) or ctx.stream
            else "application/json"
        )
        to_relay(
            flow,
            rt.relay.port,
            {**headers, "content-type": "application/json", "accept": accept, FLOW_HEADER: flow.id},
        )
        # passthrough forwards the client's bytes as they came, not a re-serialisation of them
        flow.request.content = (
            sent
            if passthrough
            else json.dumps(upstream_body, ensure_ascii=False, separators=(",", ":")).encode()
        )
        flow.metadata["codex_api_proxy"] = state
        flow.comment = self.label(flow, state, body if rt.inspecting else None)
        rt.relay.expect(flow.id, state)
        log.debug(
            "%s -> %s %s (model %s, stream %s)", family.name, route, upstream_path, ctx.model, ctx.stream
        )

    @staticmethod
    def label(flow: http.HTTPFlow, state: FlowState, original: dict[str, Any] | None) -> str:
        """What mitmweb shows for the flow: what the client called and what went upstream; when
        inspecting, the client's own request too (the flow's request is the translated one)."""
        label = f"{flow.request.method} {flow.request.path.split('?', 1)[0]} {state.ctx.model} -> {state.model_sent}"
        if original is None:
            return label
        text = json.dumps(original, ensure_ascii=False, indent=1)
        if len(text) > INSPECT_LIMIT:
            text = text[:INSPECT_LIMIT] + f"\n... ({len(text) - INSPECT_LIMIT} more characters)"
        return f"{label}\n\nThe client's request:\n{text}"

    async def list_models(self, flow: http.HTTPFlow) -> dict[str, Any]:
        rt = self.runtime
        auth = await rt.credentials.get()
        key = f"{auth.mode}:{auth.account_id or ''}"
        refresh = flow.request.query.get("refresh", "").lower() in ("1", "true", "yes")
        async with rt.models.lock:
            cached = None if refresh else rt.models.get(key)
            rt.metrics.models_cache(hit=cached is not None)
            if cached:
                return cached
            assert rt.backend is not None, "upstream not running"
            if auth.mode == "chatgpt":
                payload = await rt.backend.json("codex", f"models?client_version={models.CLIENT_VERSION}")
                rt.models.learn_levels(payload)
                result = models.listing(models.from_codex_catalog(payload))
            else:
                payload = await rt.backend.json("openai", "models")
                data = payload.get("data") if isinstance(payload, dict) else None
                result = models.listing(
                    [models.model_entry(m["id"]) for m in data or [] if isinstance(m, dict) and "id" in m]
                )
            rt.models.put(key, result)
            return result

    async def models_answer(self, flow: http.HTTPFlow, model_id: str | None) -> http.Response:
        """GET /v1/models[/{id}] in the shape the client speaks (see models.wants_anthropic)."""
        shape = models.wants_anthropic(flow.request.headers, flow.request.query)
        model_map = self.runtime.settings.model_map
        try:
            listed = await self.list_models(flow)
            if model_id is None:
                return json_response(
                    200, models.anthropic_listing(listed["data"], model_map) if shape else listed
                )
            wanted = urllib.parse.unquote(model_id)
            found = models.find_model(wanted, listed["data"], model_map, shape)
            if found is None:
                raise ProxyError(404, f"model {wanted!r} not found", code="not_found")
            return json_response(200, found)
        except ProxyError as error:
            return error_response(error, shape)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """The relay has translated the answer already: streams go to the client as they come."""
        response = flow.response
        if (
            "codex_api_proxy" in flow.metadata
            and response is not None
            and response.headers.get("content-type", "").startswith("text/event-stream")
        ):
            response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get("codex_api_proxy")
        if state is not None and self.runtime.relay is not None:
            self.runtime.relay.forget(flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        """The flow ended without an answer, most often because its client went away."""
        state: FlowState | None = flow.metadata.get("codex_api_proxy")
        if state is not None:
            if self.runtime.relay is not None:
                self.runtime.relay.forget(flow.id)
            log.info(
                "%s flow ended early: %s", state.family.name, flow.error.msg if flow.error else "unknown"
            )


def json_error_page(status_code: int, message: str = "") -> bytes:
    """mitmproxy's own error answers (an unparsable request, an unreachable target) as JSON that
    both SDKs read: the Anthropic envelope with the OpenAI error fields inside."""
    error = ProxyError(status_code, f"codex-api-proxy: {message}", code="proxy_error")
    body = {"type": "error", "error": {**error.openai_body()["error"], "type": error.anthropic_type()}}
    response = http.Response.make(status_code, json.dumps(body), {**JSON, "connection": "close"})
    return http1.assemble_response(response)


_read_headers = _http1.Http1Server.read_headers


def bounded_read_headers(self: Any, event: Any) -> Any:
    """mitmproxy buffers a request head until its blank line, however long ("FIXME: protect against
    header size DoS"): past the limit, the client gets a 431 and the connection is closed."""
    yield from _read_headers(self, event)
    if self.state == self.read_headers and len(self.buf) > boundary.MAX_HEADER_BYTES:
        message = f"request head larger than {boundary.MAX_HEADER_BYTES >> 10} KiB"
        yield commands.SendData(self.conn, _http1.make_error_response(431, message))
        yield commands.CloseConnection(self.conn)
        self.state = self.done


def make_addons(runtime: Runtime | None = None) -> list[Any]:
    """The proxy's addons in hook order, sharing one runtime."""
    # mitmproxy writes these answers itself, past every hook: the only way to keep HTML from clients
    # and an endless head out of memory (both pinned by tests/test_mitmproxy_contract.py)
    _http1.make_error_response = json_error_page
    _http1.Http1Server.read_headers = bounded_read_headers
    runtime = runtime or Runtime()
    return [
        ProxyOptions(runtime),
        UpstreamRelay(runtime),
        Boundary(runtime),
        LocalEndpoints(runtime),
        ApiGateway(runtime),
        # they only watch, after the gateway so they see its final answers; RequestMetrics last
        observe.RequestIds(),
        Quota(runtime),
        observe.RequestMetrics(runtime, route_path),
    ]
