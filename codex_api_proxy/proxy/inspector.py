"""The inspector addon: under mitmweb (`start --web`), each flow shown as the client sent it, with what
went upstream beside it.

To translate a request the gateway rewrites the flow (the relay's loopback address, the translated body,
the relay's headers), and a local endpoint's flow keeps mitmproxy's dead reverse target (127.0.0.1:9).
Once the request has left (its answer's head is here), this addon puts the client's request back on the
flow: the proxy's own address, the client's headers (keys masked by the boundary) and body; the flow's
comment keeps the label (client model -> upstream model) and the translated request, with the upstream
URL and its credentials masked (they are added past mitmproxy, in the relay). Only when inspecting
(mitmweb stores bodies): the lean daemon keeps no flows and pays nothing.
"""

from __future__ import annotations

import json

from mitmproxy import http

from ..core.limits import INSPECT_CHARS
from ..relay.exchange import FlowState, flow_state
from ..relay.server import FLOW_HEADER
from .runtime import Runtime, handled

UPSTREAM_MARK = "Sent upstream: "  # starts the comment's upstream part (the Upstream content view)
_CREDENTIALS = {"codex": ("authorization: Bearer ***", "chatgpt-account-id: ***"), "openai": ("authorization: Bearer ***",)}  # fmt: skip


class Inspector:
    """Shows each flow as its client sent it, the upstream request in its comment (see above)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sent: dict[str, http.Request] = {}  # flow id -> the client's request, until it has left

    def request(self, flow: http.HTTPFlow) -> None:
        """Before the gateway: the client's request as it came (the boundary masked its key)."""
        if self.runtime.inspecting and not handled(flow):
            self.sent[flow.id] = flow.request.copy()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.show_as_sent(flow)  # a stream's list entry is right while it runs

    def response(self, flow: http.HTTPFlow) -> None:
        self.show_as_sent(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.show_as_sent(flow)

    def show_as_sent(self, flow: http.HTTPFlow) -> None:
        if not self.runtime.inspecting:
            return
        client = self.sent.pop(flow.id, None)
        state = flow_state(flow)
        if client is not None and state is not None:
            flow.comment = f"{flow.comment}\n\n{self.upstream_text(flow, state)}"
        if client is not None:
            flow.request.data = client.data
        host, port = flow.client_conn.sockname[:2] if flow.client_conn.sockname else ("127.0.0.1", 0)
        flow.request.data.host, flow.request.data.port = host, port

    def upstream_text(self, flow: http.HTTPFlow, state: FlowState) -> str:
        """The translated request as the relay sends it upstream: the headers mitmproxy gave the relay,
        the body the gateway registered on the flow's state."""
        settings = self.runtime.settings
        base = settings.upstream_url if state.route == "codex" else settings.openai_url
        # the loopback hop carries no body (the relay takes it from the state): its length is the state's
        hop_only = ("host", "content-length", FLOW_HEADER)
        headers = [f"{k}: {v}" for k, v in flow.request.headers.items() if k.lower() not in hop_only]
        headers.append(f"content-length: {len(state.body or b'')}")
        try:
            body = json.dumps(json.loads(state.body or b"null"), ensure_ascii=False, indent=1)
        except ValueError:
            body = state.body.decode("utf-8", "replace")
        if len(body) > INSPECT_CHARS:
            body = body[:INSPECT_CHARS] + f"\n... ({len(body) - INSPECT_CHARS} more characters)"
        credentials = _CREDENTIALS.get(state.route, ())
        return "\n".join([f"{UPSTREAM_MARK}POST {base}/{state.path}",
                          *(f"{c} (added past mitmproxy)" for c in credentials), *headers, "", body])  # fmt: skip
