"""The translating API gateway addon: each API family's request translated and handed to the relay."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from ..core import boundary, jsonslices, models, routes
from ..core import headers as header_policy
from ..core.conversations import conversation_headers
from ..core.errors import ProxyError
from ..core.limits import RELEASE_DELAY
from ..relay.exchange import Family, FlowState, flow_state, set_flow_state
from ..relay.server import FLOW_HEADER
from ..translate import anthropic, chat, responses
from ..translate.base import RequestContext, TranslatorOptions
from ..translate.responses import compact
from . import observe
from .runtime import Runtime, error_response, fail_closed, handled, json_response, to_relay

log = logging.getLogger("codex_api_proxy")

# route name (core/routes.py) -> the family that translates it
FAMILIES = {
    "responses": Family("responses", responses, passthrough_path="responses"),
    "chat": Family("chat", chat, passthrough_path="chat/completions"),
    "messages": Family("anthropic", anthropic, anthropic=True),
    "compact": Family(
        "compact",
        compact,
        passthrough_path="responses/compact",
        upstream_path="responses/compact",
        unary=True,
    ),
}


@dataclass
class Upstream:
    """What goes upstream for one request: the body (and its bytes), the path and the headers; or, for
    a probe, the local answer instead."""

    body: dict[str, Any]
    content: bytes  # passthrough: the client's bytes as they came, not a re-serialisation of them
    path: str
    headers: dict[str, str]
    probe_answer: dict[str, Any] | None = None


class ApiGateway:
    """Routes the API families: translate the request and hand the flow to the relay.

    The relay's exchange does the rest (upstream call, the answer translated back); this addon only
    marks streamed answers as streams so mitmproxy forwards them as they come, and tells the relay
    when a flow is over, so a client that left stops its upstream request.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.releasing: asyncio.Task[None] | None = None

    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        if handled(flow):
            return
        path, method = routes.route_path(flow.request.path), flow.request.method
        called = flow.request.path.split("?", 1)[0][:200]  # error texts name the path as the client wrote it
        route = routes.find(path)
        if route is None:
            raise ProxyError(404, f"no route for {method} {called}", code="not_found")
        if route.name == "responses" and method == "GET":
            responses.refuse_websocket(flow.request.headers)  # 426: clients fall back to HTTP at once
        if method not in route.methods:
            raise ProxyError(405, f"{method} is not allowed on {called}", code="method_not_allowed")
        if route.name in FAMILIES:
            await self.translate_request(flow, FAMILIES[route.name])
        elif route.name == "count_tokens":
            body, _ = await self.json_body(flow)
            headers = boundary.header_dict(flow.request.headers.fields)
            count = await asyncio.to_thread(anthropic.count_tokens, body, headers, self.runtime.calibration)
            flow.response = json_response(200, {"input_tokens": count})
        elif route.name in ("models", "model"):
            flow.response = await self.models_answer(flow, path[len("/models/") :] or None)
        else:  # a local route the endpoints did not answer
            raise ProxyError(404, f"no route for {method} {called}", code="not_found")

    @staticmethod
    async def json_body(flow: http.HTTPFlow) -> tuple[dict[str, Any], bytes]:
        """The request's JSON object and its decoded bytes (see boundary.json_body); a large body
        is parsed in a worker thread, so other clients are answered meanwhile."""
        raw, encoding = flow.request.raw_content or b"", flow.request.headers.get("content-encoding", "")
        if boundary.off_loop(raw, encoding):
            return await asyncio.to_thread(boundary.json_body, raw, encoding)
        return boundary.json_body(raw, encoding)

    def translator_options(self, family: Family, account: str | None) -> TranslatorOptions:
        """What the family's translator reads of the settings and the Runtime's shared records."""
        rt = self.runtime
        if family.name == "anthropic":  # the per-conversation records its turns feed
            return TranslatorOptions(
                tool_order=rt.tool_order,
                model_map=rt.settings.model_map,
                calibration=rt.calibration,
                cache_health=rt.cache_health,
            )
        if family.name == "chat":
            return TranslatorOptions(tool_order=rt.tool_order, expose_reasoning=rt.settings.expose_reasoning)
        return TranslatorOptions(
            tool_order=rt.tool_order, conversation=rt.conversations.conversation(account)
        )

    async def translate_request(self, flow: http.HTTPFlow, family: Family) -> None:
        rt = self.runtime
        body, sent = await self.json_body(flow)
        auth = await rt.credentials.get()
        client_headers = boundary.header_dict(flow.request.headers.fields)
        ctx = RequestContext(
            model=str(body.get("model") or ""),
            stream=bool(body.get("stream")),
            headers=client_headers,
            options=self.translator_options(family, auth.account_id),
        )
        passthrough = auth.mode == "apikey" and family.passthrough_path is not None
        route = "openai" if passthrough or auth.mode != "chatgpt" else "codex"
        headers = header_policy.forwarded(client_headers)
        if route == "codex":
            headers.setdefault("originator", header_policy.originator())
        large = boundary.off_loop(sent, flow.request.headers.get("content-encoding", ""))
        prepare = (body, ctx, family, route, headers, large)
        if passthrough:
            upstream = Upstream(body, sent, family.passthrough_path or "", headers)
        elif large:
            upstream = await asyncio.to_thread(self.prepare, *prepare)  # as costly as parsing it
        else:
            upstream = self.prepare(*prepare)
        if upstream.probe_answer is not None:
            flow.response = json_response(200, upstream.probe_answer)
            return
        assert rt.relay is not None, "relay not running"
        upstream_body, headers = upstream.body, upstream.headers
        # no conversation (or the OpenAI API): the request's own id, the one the client gets back
        headers.setdefault(header_policy.UPSTREAM_REQUEST_ID, flow.metadata[observe.REQUEST_ID])
        key = upstream_body.get("prompt_cache_key")
        ctx.state.conversation = key if isinstance(key, str) else ""  # the usage page's conversation
        state = FlowState(
            family,
            ctx,
            passthrough,
            route,
            upstream.path,
            str(upstream_body.get("model") or ""),
            body=upstream.content,
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
        # the relay sends the body from the state: the loopback hop carries none (and the inspector
        # shows the state's body in mitmweb)
        flow.request.content = b""
        set_flow_state(flow, state)
        flow.comment = f"{ctx.model} -> {state.model_sent}"  # mitmweb's label (proxy/inspector.py)
        rt.relay.expect(flow.id, state)
        log.debug(
            "%s -> %s %s (model %s, stream %s)", family.name, route, upstream.path, ctx.model, ctx.stream
        )

    def prepare(
        self,
        body: dict[str, Any],
        ctx: RequestContext,
        family: Family,
        route: str,
        headers: dict[str, str],
        large: bool = False,
    ) -> Upstream:
        """Translation up to the bytes that go upstream: no flow, no await, so that a large body can be
        prepared in a worker thread (its parts that keep state lock themselves). A large one is also
        encoded and hashed in slices (core/jsonslices.py): one json.dumps of it would hold the GIL,
        and so every other client's event loop, for as long as it takes."""
        if family.anthropic and anthropic.is_probe(body):
            return Upstream(body, b"", "", headers, probe_answer=anthropic.probe_response(body, ctx))
        upstream_body = family.module.to_upstream(body, ctx)
        if route == "codex":  # an effort the model lacks would be a 400; the catalog says which
            models.clamp_body_effort(
                upstream_body, self.runtime.models.reasoning_levels(upstream_body.get("model"))
            )
            headers = conversation_headers(headers, upstream_body.get("prompt_cache_key"))
        key = upstream_body.get("prompt_cache_key")
        ctx.state.cache_thread = self.runtime.cache_health.note_request(key, upstream_body, headers, large)
        if large:
            content = jsonslices.encode(upstream_body, separators=(",", ":"))
        else:
            content = json.dumps(upstream_body, ensure_ascii=False, separators=(",", ":")).encode()
        return Upstream(upstream_body, content, family.upstream_path, headers)

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
            flow_state(flow) is not None
            and response is not None
            and response.headers.get("content-type", "").startswith("text/event-stream")
        ):
            response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        state = flow_state(flow)
        if state is not None and self.runtime.relay is not None:
            self.runtime.relay.forget(flow.id)
        self.release_after(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        """The flow ended without an answer, most often because its client went away."""
        state = flow_state(flow)
        if state is not None:
            if self.runtime.relay is not None:
                self.runtime.relay.forget(flow.id)
            log.info(
                "%s flow ended early: %s", state.family.name, flow.error.msg if flow.error else "unknown"
            )
        self.release_after(flow)

    def release_after(self, flow: http.HTTPFlow) -> None:
        """After a large body, its memory goes back to the system (boundary.release_memory): once,
        a moment later, when mitmproxy has dropped the flow and its buffers."""
        state = flow_state(flow)  # the upstream body lives there; a probe's, in the flow
        size = max(len(flow.request.raw_content or b""), len(state.body) if state is not None else 0)
        if size > boundary.OFF_LOOP_BYTES and (self.releasing is None or self.releasing.done()):
            self.releasing = asyncio.get_running_loop().create_task(self._release())

    @staticmethod
    async def _release() -> None:
        await asyncio.sleep(RELEASE_DELAY)
        # mitmproxy's flow and connection objects form reference cycles: the body they hold would
        # wait for the next full collection, which an idle proxy does not run
        started = time.perf_counter()
        gc.collect()
        collected = time.perf_counter() - started
        await asyncio.to_thread(boundary.release_memory)
        log.debug("memory of a large body handed back to the system (collection %.0f ms)", collected * 1000)
