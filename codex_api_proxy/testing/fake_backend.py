"""A scripted fake of the ChatGPT Codex backend, its OAuth token endpoint and the OpenAI API, for tests
and `demo`.

A real HTTP/1.1 server on 127.0.0.1 (asyncio streams in a daemon thread): keep-alive, concurrent
connections, SSE answers written as one chunk per event and flushed, so delays, stalls and cut
connections look to a client exactly like the real backend's. It enforces the backend's request rules
(stream/store, rejected parameters, item ids with store=false, reasoning replay, tool-call pairing)
with the backend's own error bodies, and reproduces its quirks: `response.completed` carries
`output: []`, the finished items only arrive as `response.output_item.done`. Like the backend it
refuses any top-level field outside the Codex CLI's own request body, `web_search_preview*` tool types
and tool names over 64 characters. A Turn may opt into stream shapes other backend builds send
(`Turn(shapes=...)`, see STREAM_SHAPES: names only at done, interleaved parallel calls finished in
reverse, no output_index, no sequence_number, text only at done); the default stream, and the demo
model's, has none of them.

    with FakeBackend(access_tokens={"access-1"}, account_id="acct-1") as fb:
        fb.enqueue(Turn(output=[reasoning("hmm"), function_call("exec", {"cmd": "ls"})]), Turn())
        ...  # POST {fb.url}/responses, GET {fb.url}/models, POST {fb.token_url}

The OpenAI API (what API-key mode talks to) lives under `{fb.openai_url}` = `{fb.base_url}/v1`:
`POST /chat/completions`, `POST /responses` and `GET /models`, authenticated by `Authorization: Bearer
<key>` against `api_keys`. It plays the same Turn script, shaped like the real API: chat answers are
`chat.completion(.chunk)`s (function calls become `tool_calls`, reasoning is only counted in usage),
Responses streams end with `response.completed` carrying the full `output`, none of the Codex request
rules apply (max_output_tokens, temperature, store... are accepted), and a failure of a non-streaming
answer is an HTTP error.

Knobs (public attributes, safe to change between requests): `access_tokens`, `refresh_tokens` and
`api_keys` (None = accept any non-empty token; a refresh token still works only once), `account_id`
(None = no `chatgpt-account-id` check), `models` (the catalog), `token_delay` (seconds before every
token answer; the token is rotated at once, so a client that gives up loses the new one), `token_delays`
(delays for the next token calls, one each, then `token_delay` again), `token_status` (e.g. 500 to make
the token endpoint fail), `token_down` (True = the token endpoint, on a port of its own, refuses
connections like a host that is down), `access_token_ttl`, `encrypted_content_needs_include` (True = like
the real backend, reasoning items only carry `encrypted_content` when the request has
`include: ["reasoning.encrypted_content"]`). Compaction as codex-rs describes it: a `/responses` request
with a `compaction_trigger` item gets exactly one `compaction` output item (v2, the script is left
alone), `POST /responses/compact` answers `{"output": [...]}` (v1); replayed `compaction` items must
carry an issued `encrypted_content`. `quota_headers`: the account's `x-codex-*` rate-limit
headers, sent on every Codex `/responses` answer, errors included; a Turn's own headers win. Observations: `requests` / `responses_requests` /
`refresh_requests` / `openai_requests`, `refresh_token_uses`, `token_grants`,
`issued_encrypted_content`, `accepted_encrypted_content`, `issued_compactions`, `accepted_compactions`,
`connections_opened`. Validation failures
(401/403/400) do not consume a scripted Turn; an HTTP-error Turn does.

This module routes each request to its endpoint and answers it; the rest is beside it: server.py (the
HTTP/1.1 server, its thread and connections), script.py
(Turn and its output items), events.py (a Turn as a Responses stream), rules.py (the backend's request
rules), tokens.py (the token endpoint's tokens and rotation), openai_api.py (the OpenAI API's shapes),
demo_model.py (the `demo` model).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ..core.sse import frame
from .demo_model import DEMO_COMMAND, DemoModel
from .events import (
    STREAM_SHAPES,
    ResponsesStream,
    default_usage,
)
from .openai_api import api_error, api_failure, chat_chunks, chat_completion
from .rules import (
    CodexRules,
    detail,
    invalid,
)
from .script import (
    DEFAULT_MODELS,
    DEFAULT_TEXT,
    Recorded,
    Turn,
    cited_text,
    custom_tool_call,
    function_call,
    hex_id,
    phrase,
    reasoning,
    text,
    web_search,
)
from .server import LoopbackServer, Reply
from .tokens import (
    TOKEN_EXPIRED,
    TokenEndpoint,
    make_jwt,
)

# The fake's public face: tests and `demo` import the script and the fake from here.
__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_QUOTA_HEADERS",
    "DEFAULT_TEXT",
    "DEMO_COMMAND",
    "STREAM_SHAPES",
    "DemoModel",
    "FakeBackend",
    "Recorded",
    "Turn",
    "cited_text",
    "custom_tool_call",
    "function_call",
    "make_jwt",
    "reasoning",
    "text",
    "web_search",
]

CODEX_PATH = "/backend-api/codex"
OPENAI_PATH = "/v1"
TOKEN_PATH = "/oauth/token"
COMPACT_PATH = "/responses/compact"
DEFAULT_QUOTA_HEADERS = {
    "x-codex-primary-used-percent": "12",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-after-seconds": "3600",
    "x-codex-secondary-used-percent": "34",
    "x-codex-secondary-window-minutes": "10080",
    "x-codex-secondary-reset-after-seconds": "259200",
    "x-codex-plan-type": "plus",
}


# ---- the fake ----------------------------------------------------------------------------------------


class FakeBackend(LoopbackServer, TokenEndpoint, CodexRules, ResponsesStream):
    def __init__(
        self,
        access_tokens: Iterable[str] | None = None,
        account_id: str | None = None,
        refresh_tokens: Iterable[str] | None = None,
        port: int = 0,
        api_keys: Iterable[str] | None = None,
    ) -> None:
        self.access_tokens: set[str] | None = None if access_tokens is None else set(access_tokens)
        self.refresh_tokens: set[str] | None = None if refresh_tokens is None else set(refresh_tokens)
        self.api_keys: set[str] | None = None if api_keys is None else set(api_keys)
        self.account_id = account_id
        self.port = port
        self.models: list[dict[str, Any]] = [dict(m) for m in DEFAULT_MODELS]
        self.token_delay = 0.0
        self.token_delays: deque[float] = deque()  # for the next token calls, one each (then token_delay)
        self.token_status: int | None = None  # set (e.g. 500) to make the token endpoint fail
        self.access_token_ttl = 3600.0
        self.encrypted_content_needs_include = False
        self.quota_headers: dict[str, str] = dict(DEFAULT_QUOTA_HEADERS)
        self.refresh_token_uses: Counter[str] = Counter()
        self.used_refresh_tokens: set[str] = set()
        self.token_grants: list[dict[str, str]] = []  # every successful token answer, in order
        self.issued_encrypted_content: set[str] = set()
        self.accepted_encrypted_content: list[str] = []  # replayed reasoning that passed verification
        self.issued_compactions: set[str] = set()  # encrypted_content of every compaction item handed out
        self.accepted_compactions: list[str] = []  # replayed compaction items that passed verification
        self.connections_opened = 0  # TCP connections accepted: shows whether a client reuses them
        self._script: deque[Turn] = deque()
        self.default_turn: Callable[[Recorded], Turn] = lambda rec: Turn()  # when the script is empty
        self._requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._token_server: asyncio.Server | None = None
        self._token_port = 0
        self._token_writers: set[asyncio.StreamWriter] = set()

    # -- public API

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + CODEX_PATH

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self._token_port}{TOKEN_PATH}"

    @property
    def openai_url(self) -> str:
        return self.base_url + OPENAI_PATH

    def enqueue(self, *turns: Turn) -> None:
        with self._lock:
            self._script.extend(turns)

    def pending(self) -> int:
        """Scripted turns not yet consumed."""
        with self._lock:
            return len(self._script)

    def clear(self) -> None:
        """Forget the script and the recorded requests (token state is kept)."""
        with self._lock:
            self._script.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def responses_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == CODEX_PATH + "/responses"]

    @property
    def refresh_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == TOKEN_PATH]

    @property
    def openai_requests(self) -> list[Recorded]:
        """Every request to the OpenAI API fake (under `openai_url`)."""
        return [r for r in self.requests if r.path.startswith(OPENAI_PATH + "/")]

    async def _dispatch(self, method: str, path: str, rec: Recorded, reply: Reply) -> bool:
        url = urlsplit(path)
        if method == "POST" and url.path == CODEX_PATH + "/responses":
            await self._responses(rec, reply)
        elif method == "POST" and url.path == CODEX_PATH + COMPACT_PATH:
            await self._compact(rec, reply)
        elif method == "GET" and url.path == CODEX_PATH + "/models":
            await self._models(rec, reply)
        elif method == "POST" and url.path == TOKEN_PATH:
            await self._token(rec, reply)
        elif method == "POST" and url.path in (OPENAI_PATH + "/chat/completions", OPENAI_PATH + "/responses"):
            await self._api_generate(rec, reply, chat=url.path.endswith("/chat/completions"))
        elif method == "GET" and url.path == OPENAI_PATH + "/models":
            await self._api_models(rec, reply)
        else:
            await reply.json(404, {"detail": "Not Found"})
        return reply.keep_alive

    # -- routes

    async def _models(self, rec: Recorded, reply: Reply) -> None:
        if not self._bearer_ok(rec):
            await reply.json(401, TOKEN_EXPIRED)
        else:
            await reply.json(200, {"models": self.models})

    async def _responses(self, rec: Recorded, reply: Reply) -> None:
        problem = self._check(rec)
        if problem:
            await reply.json(*problem)
            return
        if any(isinstance(i, dict) and i.get("type") == "compaction_trigger" for i in rec.body["input"]):
            await self._play(Turn(), reply, self._compaction_frames(rec))
            return
        turn = await self._next_turn(reply, lambda status: {"detail": phrase(status)}, self.quota_headers)
        if turn is not None:
            await self._play(turn, reply, [frame(e, e["type"]) for e in self._events(turn, rec)])

    async def _api_generate(self, rec: Recorded, reply: Reply, chat: bool) -> None:
        """POST /v1/chat/completions or /v1/responses of the OpenAI API, streaming or not."""
        problem = self._check_api(rec, "messages" if chat else None)
        if problem:
            await reply.json(*problem)
            return
        turn = await self._next_turn(reply, lambda status: api_error(status, phrase(status)))
        if turn is None:
            return
        usage = turn.usage if turn.usage is not None else default_usage(rec, turn.output)
        if rec.body.get("stream") is True:
            if chat:
                frames = [frame(c) for c in chat_chunks(turn, rec.body, usage)]
            else:
                frames = [frame(e, e["type"]) for e in self._events(turn, rec, full_output=True)]
            await self._play(turn, reply, frames)
            return
        if turn.cut_after is not None:
            reply.keep_alive = False  # the connection closes with no answer at all
            return
        await asyncio.sleep(turn.stall + turn.delay * len(turn.output))  # "generating": stall, delay per item
        failure = api_failure(turn)
        if failure:
            await reply.json(*failure, turn.headers)
        elif chat:
            await reply.json(200, chat_completion(turn, rec.body, usage), turn.headers)
        else:
            await reply.json(200, self._events(turn, rec, full_output=True)[-1]["response"], turn.headers)

    async def _api_models(self, rec: Recorded, reply: Reply) -> None:
        problem = self._check_api(rec)
        if problem:
            await reply.json(*problem)
            return
        data = [{"id": m["slug"], "object": "model", "created": 1_700_000_000, "owned_by": "system"}
                for m in self.models]  # fmt: skip
        await reply.json(200, {"object": "list", "data": data})

    async def _next_turn(
        self, reply: Reply, default_error: Callable[[int], Any], headers: dict[str, str] | None = None
    ) -> Turn | None:
        """The next scripted Turn, with `headers` under its own; None when it was an HTTP-error Turn,
        already answered."""
        with self._lock:
            turn = self._script.popleft() if self._script else self.default_turn(reply.rec)
        if headers:
            turn = dataclasses.replace(turn, headers={**headers, **turn.headers})
        if turn.delay_headers:
            await asyncio.sleep(turn.delay_headers)
        if turn.status == 200:
            return turn
        await reply.json(turn.status, turn.error_body or default_error(turn.status), turn.headers)
        return None

    @staticmethod
    async def _play(turn: Turn, reply: Reply, frames: list[bytes]) -> None:
        """Stream one frame per chunk as the Turn says: a stall after the first, a delay between the
        others, a cut after `cut_after`."""
        await reply.start_stream(turn.headers)
        for n, data in enumerate(frames):
            if turn.cut_after is not None and n >= turn.cut_after:
                if turn.cut_clean:
                    await reply.end()
                else:
                    reply.keep_alive = False  # closing now leaves the chunked body unterminated
                return
            if n == 1 and turn.stall:
                await asyncio.sleep(turn.stall)
            elif n and turn.delay:
                await asyncio.sleep(turn.delay)
            await reply.chunk(data)
        await reply.end()

    async def _token(self, rec: Recorded, reply: Reply) -> None:
        body = rec.body if isinstance(rec.body, dict) else {}
        token = body.get("refresh_token")
        status, answer = self._rotate(body, token if isinstance(token, str) else None)
        with self._lock:
            delay = self.token_delays.popleft() if self.token_delays else self.token_delay
        if delay:
            await asyncio.sleep(delay)
        await reply.json(status, answer)

    # -- rules

    def _check_api(self, rec: Recorded, required: str | None = None) -> tuple[int, dict[str, Any]] | None:
        """The OpenAI API's checks: its API key, then (for generation) a JSON object with a model and,
        for chat, `messages`; None when the request passes."""
        scheme, _, key = rec.headers.get("authorization", "").partition(" ")
        key = key.strip()
        with self._lock:
            known = self.api_keys is None or key in self.api_keys
        if scheme.lower() != "bearer" or not key or not known:
            shown = f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}" if len(key) > 10 else key
            message = (
                f"Incorrect API key provided: {shown}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            return 401, api_error(401, message, code="invalid_api_key")
        if rec.method == "GET":
            return None
        body = rec.body
        if not isinstance(body, dict):
            return invalid("We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return invalid("you must provide a model parameter")
        if required and not (isinstance(body.get(required), list) and body[required]):
            return invalid(
                f"Missing required parameter: '{required}'.", required, "missing_required_parameter"
            )
        return None

    # -- compaction (codex-rs: compact_remote.rs v1, compact_remote_v2.rs v2)

    def _compaction_frames(self, rec: Recorded) -> list[bytes]:
        """v2: a `/responses` request whose input ends in an id-less `compaction_trigger` is answered,
        whatever the script says, with exactly one `compaction` output item."""
        resp_id, created = hex_id("resp"), int(time.time())
        item = self._issue_compaction(rec)
        usage = default_usage(rec, [])

        def response(status: str, **extra: Any) -> dict[str, Any]:
            return {"id": resp_id, "object": "response", "created_at": created, "model": rec.body["model"],
                    "status": status, "output": [], "usage": None, **extra}  # fmt: skip

        events = [
            {"type": "response.created", "response": response("in_progress")},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**item, "encrypted_content": None},
            },
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": "response.completed", "response": response("completed", usage=usage)},
        ]
        return [frame({**e, "sequence_number": n}, e["type"]) for n, e in enumerate(events)]

    async def _compact(self, rec: Recorded, reply: Reply) -> None:
        """v1: `POST /responses/compact` (unary JSON, no stream/store) -> `{"output": [...]}`, the new
        history: the user messages kept, then one `compaction` item for everything else."""
        if not self._bearer_ok(rec):
            await reply.json(401, TOKEN_EXPIRED)
            return
        if self.account_id is not None and rec.headers.get("chatgpt-account-id") != self.account_id:
            await reply.json(*detail("chatgpt-account-id header is missing or does not match", 403))
            return
        body = rec.body
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            problem = detail("Missing required parameter: model")
        elif not isinstance(body.get("input"), list):
            problem = detail("Input must be a list")
        elif "stream" in body or "store" in body:
            problem = detail(f"Unsupported parameter: {'stream' if 'stream' in body else 'store'}")
        else:
            problem = self._check_input(body["input"])
        if problem:
            await reply.json(*problem)
            return
        kept = [i for i in body["input"] if isinstance(i, dict) and i.get("role") == "user"]
        await reply.json(200, {"output": [*kept, self._issue_compaction(rec)]})
