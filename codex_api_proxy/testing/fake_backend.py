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
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..core.sse import frame
from ..relay import http11

DEFAULT_TEXT = "Hello from the fake Codex backend."
CODEX_PATH = "/backend-api/codex"
OPENAI_PATH = "/v1"
TOKEN_PATH = "/oauth/token"
COMPACT_PATH = "/responses/compact"
REJECTED_PARAMS = ("max_output_tokens", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                   "metadata", "truncation", "user", "stream_options")  # fmt: skip
# The fields of the Codex CLI's own request body (codex-rs ResponsesApiRequest); like the backend, any
# other top-level field (prompt_cache_retention, context_management, background...) is a 400.
ACCEPTED_PARAMS = frozenset({"model", "instructions", "input", "tools", "tool_choice", "parallel_tool_calls",
                             "reasoning", "store", "stream", "include", "service_tier", "prompt_cache_key",
                             "text", "client_metadata"})  # fmt: skip
REFUSED_TOOL_PREFIXES = ("web_search_preview",)  # the OpenAI API's names for web_search: not the backend's
MAX_TOOL_NAME = 64
# Opt-in stream shapes other backend builds send (Turn.shapes); the default stream has none of them.
STREAM_SHAPES = frozenset({
    "names_at_done",  # function/custom calls announced with an empty name; the name only in output_item.done
    "interleaved",  # parallel calls: all announced, their deltas alternating, finished in reverse order
    "no_output_index",  # no event carries output_index (items known by item_id only)
    "no_sequence_number",  # no event carries sequence_number
    "text_at_done",  # a message item only as its output_item.done (no added, no part, no deltas)
})  # fmt: skip
OUTPUT_OF = {"function_call_output": "function_call", "custom_tool_call_output": "custom_tool_call"}
DEFAULT_QUOTA_HEADERS = {
    "x-codex-primary-used-percent": "12",
    "x-codex-primary-window-minutes": "300",
    "x-codex-primary-reset-after-seconds": "3600",
    "x-codex-secondary-used-percent": "34",
    "x-codex-secondary-window-minutes": "10080",
    "x-codex-secondary-reset-after-seconds": "259200",
    "x-codex-plan-type": "plus",
}
TOKEN_EXPIRED = {
    "error": {
        "message": "Your authentication token has expired. Please try signing in again.",
        "type": "invalid_request_error",
        "code": "token_expired",
    }
}


# ---- output items a Turn streams -------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str
    chunks: int = 3
    annotations: tuple[dict[str, Any], ...] = ()  # url_citation annotations (see cited_text)


@dataclass(frozen=True)
class Reasoning:
    summary: tuple[str, ...]
    encrypted_content: str | None = None


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: str
    call_id: str | None = None
    chunks: int = 2


@dataclass(frozen=True)
class CustomToolCall:
    name: str
    input: str
    call_id: str | None = None
    chunks: int = 2


@dataclass(frozen=True)
class WebSearch:
    """A hosted web search the backend ran (a `web_search_call` item) and the pages it found."""

    query: str
    sources: tuple[str, ...] = ()  # urls; sent only when the request includes web_search_call.action.sources


OutputSpec = Text | Reasoning | FunctionCall | CustomToolCall | WebSearch


def text(value: str, chunks: int = 3) -> Text:
    """An assistant message, streamed as `chunks` output_text deltas."""
    return Text(value, chunks)


def reasoning(
    summary: str | Iterable[str] = "Thinking...", encrypted_content: str | None = None
) -> Reasoning:
    """A reasoning item (one summary part per string, [] for none). Without `encrypted_content` the
    fake issues `enc_<random>`; either way it remembers it, so only those can be replayed."""
    parts = (summary,) if isinstance(summary, str) else tuple(summary)
    return Reasoning(parts, encrypted_content)


def function_call(name: str, arguments: str | dict[str, Any], call_id: str | None = None) -> FunctionCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
    return FunctionCall(name, args, call_id)


def web_search(query: str, *sources: str) -> WebSearch:
    """A `web_search_call` item for `query` that found `sources` (urls)."""
    return WebSearch(query, sources)


def cited_text(value: str, *citations: tuple[str, str, str], chunks: int = 3) -> Text:
    """An assistant message whose text cites web pages: each citation is (url, title, quoted span of
    `value`), sent as a url_citation annotation over that span, as the Responses API does."""
    annotations = []
    for url, title, span in citations:
        start = value.index(span)
        annotations.append(
            {
                "type": "url_citation",
                "start_index": start,
                "end_index": start + len(span),
                "url": url,
                "title": title,
            }
        )
    return Text(value, chunks, tuple(annotations))


def custom_tool_call(name: str, input: str, call_id: str | None = None) -> CustomToolCall:
    """A freeform (`custom`) tool call such as Codex's apply_patch."""
    return CustomToolCall(name, input, call_id)


@dataclass
class Turn:
    """One scripted answer to one POST /responses (see the module and field comments)."""

    output: list[OutputSpec] = field(default_factory=lambda: [text(DEFAULT_TEXT)])
    usage: dict[str, Any] | None = None  # None: realistic numbers derived from the request and output
    status: int = 200  # != 200: a plain JSON error answer (error_body, headers) instead of a stream
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent with the stream or the error answer
    fail: dict[str, Any] | None = None  # {"code", "message"}: end with response.failed
    error_event: dict[str, Any] | None = None  # emitted as {"type": "error", "error": <this>}, then EOF
    incomplete: str | None = None  # reason: end with response.incomplete
    cut_after: int | None = None  # close the connection after this many events, no terminal event
    cut_clean: bool = False  # with cut_after: end the chunked body properly instead of dropping it
    delay: float = 0.0  # seconds between events
    stall: float = 0.0  # seconds of silence after response.created
    delay_headers: float = 0.0  # seconds before the status line
    shapes: frozenset[str] = frozenset()  # STREAM_SHAPES this answer's stream has (Codex route only)

    @classmethod
    def usage_limit(cls, resets_in_seconds: int = 120, plan_type: str = "plus") -> Turn:
        """The backend's 429 when the plan's window is used up: the error `type` (what the Codex
        CLI matches on), the plan, the reset as an epoch and as seconds, and the rate-limit headers."""
        resets_at = int(time.time()) + resets_in_seconds
        body = {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": plan_type,
                "resets_at": resets_at,
                "resets_in_seconds": resets_in_seconds,
            }
        }
        headers = {
            "x-codex-primary-used-percent": "100.0",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-after-seconds": str(resets_in_seconds),
            "x-codex-primary-reset-at": str(resets_at),
            "x-codex-secondary-used-percent": "41.0",
            "x-codex-secondary-window-minutes": "10080",
        }
        return cls(status=429, error_body=body, headers=headers)

    @classmethod
    def http_error(
        cls, status: int = 500, detail: str | None = None, headers: dict[str, str] | None = None
    ) -> Turn:
        body = {"detail": detail or _phrase(status)}
        return cls(status=status, error_body=body, headers=headers or {})

    @classmethod
    def rate_limited(cls, seconds: float = 1.5) -> Turn:
        message = f"Rate limit reached for requests. Please try again in {seconds}s."
        return cls(output=[], fail={"code": "rate_limit_exceeded", "message": message})

    @classmethod
    def context_length_exceeded(cls) -> Turn:
        message = (
            "Your input exceeds the context window of this model. Please adjust your input and try again."
        )
        return cls(output=[], fail={"code": "context_length_exceeded", "message": message})


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON (or form fields), None when empty or unparsable
    raw: bytes
    status: int | None = None  # what the fake answered
    received_at: float = field(default_factory=time.monotonic)
    # when the client closed the connection while this request was still being answered (the proxy
    # must stop an upstream request whose own client went away)
    closed_at: float | None = None


# ---- helpers -----------------------------------------------------------------------------------------


def _hex_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # 529 and friends
        return "Overloaded" if status == 529 else "Error"


def _detail(message: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"detail": message}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _split(value: str, n: int) -> list[str]:
    """`value` in `n` non-empty pieces (fewer when it is shorter)."""
    n = max(1, min(n, len(value)))
    bounds = [i * len(value) // n for i in range(n + 1)]
    return [value[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(payload: dict[str, Any]) -> str:
    """An unsigned JWT-shaped token (header.payload.signature)."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}.{_b64(secrets.token_bytes(16))}"


def _jwt_exp(token: str) -> float | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def _parse_body(raw: bytes, content_type: str) -> Any:
    """JSON whatever the content type says; form fields only as a fallback (the token endpoint takes both)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        if "application/x-www-form-urlencoded" in content_type:
            return dict(parse_qsl(raw.decode("utf-8", "replace")))
        return None


def _levels(*efforts: str) -> list[dict[str, str]]:
    return [{"effort": e, "description": f"{e.capitalize()} reasoning effort"} for e in efforts]


def _model(slug: str, name: str, priority: int, visibility: str = "list", **extra: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "display_name": name,
        "description": f"{name} (fake catalog entry)",
        "default_reasoning_level": "medium",
        "supported_reasoning_levels": _levels("low", "medium", "high", "xhigh"),
        "visibility": visibility,
        "supported_in_api": True,
        "priority": priority,
        "minimal_client_version": "0.1.0",
        "shell_type": "shell_command",
        "context_window": 272000,
        "input_modalities": ["text", "image"],
        "service_tiers": [{"id": "priority"}],
        **extra,
    }


DEFAULT_MODELS = [
    _model("gpt-5.5", "GPT-5.5", 1),
    _model("gpt-5.4", "GPT-5.4", 2),
    _model("gpt-5.4-mini", "GPT-5.4 mini", 3, supported_reasoning_levels=_levels("low", "medium", "high")),
    _model("codex-auto-review", "Codex auto review", 10, visibility="hide"),
]


# ---- HTTP plumbing -----------------------------------------------------------------------------------


async def _watch_close(reader: asyncio.StreamReader, rec: Recorded) -> None:
    """Notice the client going away while its request is being answered (stalls included)."""
    while not reader.at_eof() and reader.exception() is None:
        await asyncio.sleep(0.02)
    rec.closed_at = time.monotonic()


class _Reply:
    """Writes one HTTP/1.1 answer: a JSON body, or a chunked stream flushed per write."""

    def __init__(self, writer: asyncio.StreamWriter, rec: Recorded, keep_alive: bool) -> None:
        self.writer, self.rec, self.keep_alive = writer, rec, keep_alive

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.rec.status = status
        fields = [*headers.items(), *([("connection", "close")] if not self.keep_alive else [])]
        self.writer.write(http11.response_head(status, fields, _phrase(status)))

    async def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._head(
            status, {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}
        )
        self.writer.write(data)
        await self.writer.drain()

    async def start_stream(self, headers: dict[str, str]) -> None:
        base = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
        }
        self._head(200, {**base, **headers})
        await self.writer.drain()

    async def chunk(self, data: bytes) -> None:
        self.writer.write(http11.chunk(data))
        await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(http11.LAST_CHUNK)
        await self.writer.drain()


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: http11.Parser
) -> tuple[http11.Request, bytes]:
    """The next request on a connection, through the proxy's own codec (EOFError: the client left)."""
    events = parser.next_message()
    head: http11.Request | None = None
    body = bytearray()
    while True:
        for event in events:
            if isinstance(event, http11.Request):
                head = event
                if head.headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            elif event is http11.END:
                assert head is not None
                return head, bytes(body)
            else:
                body += event
        data = await reader.read(1 << 16)
        if not data:
            parser.feed_eof()
            raise EOFError("the client closed the connection")
        events = parser.feed(data)


# ---- the fake ----------------------------------------------------------------------------------------


class FakeBackend:
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
    def token_down(self) -> bool:
        return self._token_server is None

    @token_down.setter
    def token_down(self, down: bool) -> None:
        """Take the token endpoint down (its port refuses connections, open ones are cut) or bring it back
        on the same port. Blocks until done; call it from any thread but the fake's own."""
        if down == self.token_down or self._loop is None:
            return
        change = self._close_token_endpoint() if down else self._open_token_endpoint()
        asyncio.run_coroutine_threadsafe(change, self._loop).result(10)

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

    def mint_access_token(self, exp_in_seconds: float = 3600.0) -> str:
        """A JWT access token expiring in `exp_in_seconds` (may be negative) that the fake accepts
        until then."""
        now = time.time()
        token = make_jwt(
            {"iat": int(now), "exp": int(now + exp_in_seconds), "jti": secrets.token_hex(8), **self._claims()}
        )
        with self._lock:
            if self.access_tokens is not None:
                self.access_tokens.add(token)
        return token

    def start(self) -> FakeBackend:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(ready, failure)), name="fake-codex-backend", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"fake backend failed to start: {failure[0] if failure else 'timeout'}")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- server

    async def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, limit=1 << 20)
            await self._open_token_endpoint()
        except OSError as exc:
            failure.append(exc)
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        await self._stopping.wait()
        server.close()
        await self._close_token_endpoint()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def _open_token_endpoint(self) -> None:
        self._token_server = await asyncio.start_server(
            self._token_connection, "127.0.0.1", self._token_port, limit=1 << 20
        )
        self._token_port = self._token_server.sockets[0].getsockname()[1]

    async def _close_token_endpoint(self) -> None:
        server, self._token_server = self._token_server, None
        if server is not None:
            server.close()  # stops listening; the connections it accepted are cut below
        for writer in list(self._token_writers):
            writer.close()

    async def _token_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._token_writers.add(writer)
        try:
            await self._connection(reader, writer)
        finally:
            self._token_writers.discard(writer)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections_opened += 1
        parser = http11.Parser("server")
        try:
            while await self._exchange(reader, writer, parser):
                pass
        except (ConnectionError, EOFError, http11.ProtocolError):
            pass  # the client went away or sent garbage: drop the connection
        except asyncio.CancelledError:
            pass  # stop(): end quietly (a cancelled stream handler task gets logged as an error)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: http11.Parser
    ) -> bool:
        """Serve one request; True to keep the connection open for the next one."""
        request, raw = await _read_request(reader, writer, parser)
        method, target, headers = request.method, request.target, request.headers
        url = urlsplit(target)
        body = _parse_body(raw, headers.get("content-type", ""))
        rec = Recorded(method, url.path, dict(parse_qsl(url.query)), headers, body, raw)
        with self._lock:
            self._requests.append(rec)
        reply = _Reply(writer, rec, request.keep_alive)
        watcher = asyncio.create_task(_watch_close(reader, rec))
        try:
            return await self._dispatch(method, url.path, rec, reply)
        finally:
            watcher.cancel()

    async def _dispatch(self, method: str, path: str, rec: Recorded, reply: _Reply) -> bool:
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

    async def _models(self, rec: Recorded, reply: _Reply) -> None:
        if not self._bearer_ok(rec):
            await reply.json(401, TOKEN_EXPIRED)
        else:
            await reply.json(200, {"models": self.models})

    async def _responses(self, rec: Recorded, reply: _Reply) -> None:
        problem = self._check(rec)
        if problem:
            await reply.json(*problem)
            return
        if any(isinstance(i, dict) and i.get("type") == "compaction_trigger" for i in rec.body["input"]):
            await self._play(Turn(), reply, self._compaction_frames(rec))
            return
        turn = await self._next_turn(reply, lambda status: {"detail": _phrase(status)}, self.quota_headers)
        if turn is not None:
            await self._play(turn, reply, [frame(e, e["type"]) for e in self._events(turn, rec)])

    async def _api_generate(self, rec: Recorded, reply: _Reply, chat: bool) -> None:
        """POST /v1/chat/completions or /v1/responses of the OpenAI API, streaming or not."""
        problem = self._check_api(rec, "messages" if chat else None)
        if problem:
            await reply.json(*problem)
            return
        turn = await self._next_turn(reply, lambda status: _api_error(status, _phrase(status)))
        if turn is None:
            return
        usage = turn.usage if turn.usage is not None else _default_usage(rec, turn.output)
        if rec.body.get("stream") is True:
            if chat:
                frames = [frame(c) for c in _chat_chunks(turn, rec.body, usage)]
            else:
                frames = [frame(e, e["type"]) for e in self._events(turn, rec, full_output=True)]
            await self._play(turn, reply, frames)
            return
        if turn.cut_after is not None:
            reply.keep_alive = False  # the connection closes with no answer at all
            return
        await asyncio.sleep(turn.stall + turn.delay * len(turn.output))  # "generating": stall, delay per item
        failure = _api_failure(turn)
        if failure:
            await reply.json(*failure, turn.headers)
        elif chat:
            await reply.json(200, _chat_completion(turn, rec.body, usage), turn.headers)
        else:
            await reply.json(200, self._events(turn, rec, full_output=True)[-1]["response"], turn.headers)

    async def _api_models(self, rec: Recorded, reply: _Reply) -> None:
        problem = self._check_api(rec)
        if problem:
            await reply.json(*problem)
            return
        data = [{"id": m["slug"], "object": "model", "created": 1_700_000_000, "owned_by": "system"}
                for m in self.models]  # fmt: skip
        await reply.json(200, {"object": "list", "data": data})

    async def _next_turn(
        self, reply: _Reply, default_error: Callable[[int], Any], headers: dict[str, str] | None = None
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
    async def _play(turn: Turn, reply: _Reply, frames: list[bytes]) -> None:
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

    async def _token(self, rec: Recorded, reply: _Reply) -> None:
        body = rec.body if isinstance(rec.body, dict) else {}
        token = body.get("refresh_token")
        status, answer = self._rotate(body, token if isinstance(token, str) else None)
        with self._lock:
            delay = self.token_delays.popleft() if self.token_delays else self.token_delay
        if delay:
            await asyncio.sleep(delay)
        await reply.json(status, answer)

    # -- rules

    def _bearer_ok(self, rec: Recorded) -> bool:
        scheme, _, token = rec.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        exp = _jwt_exp(token)
        if exp is not None and exp <= time.time():
            return False
        with self._lock:
            return self.access_tokens is None or token in self.access_tokens

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
            return 401, _api_error(401, message, code="invalid_api_key")
        if rec.method == "GET":
            return None
        body = rec.body
        if not isinstance(body, dict):
            return _invalid("We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _invalid("you must provide a model parameter")
        if required and not (isinstance(body.get(required), list) and body[required]):
            return _invalid(
                f"Missing required parameter: '{required}'.", required, "missing_required_parameter"
            )
        return None

    def _check(self, rec: Recorded) -> tuple[int, dict[str, Any]] | None:
        """The backend's validation of POST /responses, in its order; None when the request passes."""
        if not self._bearer_ok(rec):
            return 401, TOKEN_EXPIRED
        if self.account_id is not None and rec.headers.get("chatgpt-account-id") != self.account_id:
            return _detail("chatgpt-account-id header is missing or does not match the token's account", 403)
        body = rec.body
        if not isinstance(body, dict):
            return _detail("Request body must be a JSON object")
        if body.get("stream") is not True:
            return _detail("Stream must be set to true")
        if body.get("store") is not False:
            return _detail("Store must be set to false")
        for name in body:
            if name in REJECTED_PARAMS or name not in ACCEPTED_PARAMS:
                return _detail(f"Unsupported parameter: {name}")
        problem = _check_tools(body)
        if problem:
            return problem
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _detail("Missing required parameter: model")
        instructions = body.get("instructions", "x")
        if not isinstance(instructions, str) or not instructions.strip():
            return _detail("Instructions are not valid")
        for i, tool in enumerate(body.get("tools") or []):
            if (
                isinstance(tool, dict)
                and tool.get("type") == "function"
                and not isinstance(tool.get("name"), str)
            ):
                param = f"tools[{i}].name"
                return _invalid(
                    f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
                )
        if not isinstance(body.get("input"), list):
            return _detail("Input must be a list")
        return self._check_effort(body) or self._check_input(body["input"])

    def _check_effort(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Like the backend: an effort the catalog does not list for the model is a 400."""
        effort = (
            (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
        )
        model = next((m for m in self.models if m.get("slug") == body["model"]), None)
        if effort is None or model is None:
            return None
        levels = [lv["effort"] for lv in model.get("supported_reasoning_levels") or []]
        if effort in levels:
            return None
        allowed = ", ".join(f"'{lv}'" for lv in levels)
        message = (
            f"Unsupported value: '{effort}' is not supported with the '{body['model']}' model. "
            f"Supported values are: {allowed}."
        )
        return _invalid(message, "reasoning.effort", "unsupported_value")

    def _check_input(self, items: list[Any]) -> tuple[int, dict[str, Any]] | None:
        calls: dict[str, set[Any]] = {"function_call": set(), "custom_tool_call": set()}
        replayed: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                return _detail(f"Invalid input item at index {i}: expected an object")
            kind = item.get("type", "message")
            if kind == "reasoning":
                enc = item.get("encrypted_content")
                if not isinstance(enc, str) and item.get("id"):
                    return _not_found(item["id"])
                with self._lock:
                    if enc not in self.issued_encrypted_content:
                        return _invalid(
                            "The encrypted content could not be verified.", None, "invalid_encrypted_content"
                        )
                replayed.append(enc)
                continue
            if item.get("id"):
                return _not_found(item["id"])
            if kind == "compaction":
                problem = self._check_compaction(item)
                if problem:
                    return problem
            elif kind == "message":
                problem = _check_message(item, i)
                if problem:
                    return problem
            elif kind in calls:
                calls[kind].add(item.get("call_id"))
            elif kind in OUTPUT_OF and item.get("call_id") not in calls[OUTPUT_OF[kind]]:
                what = kind.replace("_", " ")
                return _detail(f"No tool call found for {what} with call_id {item.get('call_id')}.")
        with self._lock:
            self.accepted_encrypted_content.extend(replayed)
        return None

    # -- compaction (codex-rs: compact_remote.rs v1, compact_remote_v2.rs v2)

    def _issue_compaction(self, rec: Recorded) -> dict[str, Any]:
        """One `compaction` item standing for the request's history (its encrypted summary)."""
        enc = "cmp_" + secrets.token_hex(16)
        with self._lock:
            self.issued_compactions.add(enc)
        return {"type": "compaction", "id": _hex_id("cmp"), "encrypted_content": enc}

    def _check_compaction(self, item: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        enc = item.get("encrypted_content")
        with self._lock:
            if enc not in self.issued_compactions:
                return _invalid(
                    "The encrypted content could not be verified.", None, "invalid_encrypted_content"
                )
            self.accepted_compactions.append(enc)
        return None

    def _compaction_frames(self, rec: Recorded) -> list[bytes]:
        """v2: a `/responses` request whose input ends in an id-less `compaction_trigger` is answered,
        whatever the script says, with exactly one `compaction` output item."""
        resp_id, created = _hex_id("resp"), int(time.time())
        item = self._issue_compaction(rec)
        usage = _default_usage(rec, [])

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

    async def _compact(self, rec: Recorded, reply: _Reply) -> None:
        """v1: `POST /responses/compact` (unary JSON, no stream/store) -> `{"output": [...]}`, the new
        history: the user messages kept, then one `compaction` item for everything else."""
        if not self._bearer_ok(rec):
            await reply.json(401, TOKEN_EXPIRED)
            return
        if self.account_id is not None and rec.headers.get("chatgpt-account-id") != self.account_id:
            await reply.json(*_detail("chatgpt-account-id header is missing or does not match", 403))
            return
        body = rec.body
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            problem = _detail("Missing required parameter: model")
        elif not isinstance(body.get("input"), list):
            problem = _detail("Input must be a list")
        elif "stream" in body or "store" in body:
            problem = _detail(f"Unsupported parameter: {'stream' if 'stream' in body else 'store'}")
        else:
            problem = self._check_input(body["input"])
        if problem:
            await reply.json(*problem)
            return
        kept = [i for i in body["input"] if isinstance(i, dict) and i.get("role") == "user"]
        await reply.json(200, {"output": [*kept, self._issue_compaction(rec)]})

    def _rotate(self, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint's decision; a refresh token works exactly once."""
        with self._lock:
            if token is not None:
                self.refresh_token_uses[token] += 1
            if self.token_status is not None:
                return self.token_status, {
                    "error": {"message": "token endpoint failure (fake)", "code": "server_error"}
                }
            if body.get("grant_type") != "refresh_token" or token is None:
                return 400, {"error": {"message": "Unsupported grant type", "code": "unsupported_grant_type"}}
            if token in self.used_refresh_tokens:
                return _refresh_error(
                    "refresh_token_reused", "already been used to generate a new access token"
                )
            if self.refresh_tokens is not None and token not in self.refresh_tokens:
                return _refresh_error("refresh_token_invalidated", "been invalidated")
            self.used_refresh_tokens.add(token)
            new_refresh = "refresh-" + secrets.token_hex(12)
            if self.refresh_tokens is not None:
                self.refresh_tokens.discard(token)
                self.refresh_tokens.add(new_refresh)
        access = self.mint_access_token(self.access_token_ttl)
        now = int(time.time())
        id_claims = {
            "iss": "https://auth.openai.com",
            "aud": [body.get("client_id") or "app_fake"],
            "sub": "user-fake",
        }
        id_token = make_jwt(
            {**id_claims, "email": "user@example.com", "iat": now, "exp": now + 3600, **self._claims()}
        )
        grant = {"access_token": access, "refresh_token": new_refresh, "id_token": id_token}
        with self._lock:
            self.token_grants.append(grant)
        return 200, grant

    def _claims(self) -> dict[str, Any]:
        auth = {
            "chatgpt_account_id": self.account_id or "acct-fake",
            "chatgpt_plan_type": "plus",
            "chatgpt_user_id": "user-fake",
        }
        return {"https://api.openai.com/auth": auth}

    # -- the stream

    def _events(self, turn: Turn, rec: Recorded, full_output: bool = False) -> list[dict[str, Any]]:
        """The Responses stream of a Turn; `full_output` = like the OpenAI API, the terminal event's
        response lists the finished items (the Codex backend sends `output: []`)."""
        body = rec.body
        resp_id, created = _hex_id("resp"), int(time.time())
        send_enc = not self.encrypted_content_needs_include or "reasoning.encrypted_content" in (
            body.get("include") or []
        )

        def response(status: str, **extra: Any) -> dict[str, Any]:
            return {"id": resp_id, "object": "response", "created_at": created, "model": body["model"],
                    "status": status, "output": [], "usage": None, **extra}  # fmt: skip

        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": response("in_progress")},
            {"type": "response.in_progress", "response": response("in_progress")},
        ]
        for index, spec in enumerate(turn.output):
            if isinstance(spec, WebSearch):
                events += _web_search_events(
                    spec, index, "web_search_call.action.sources" in body.get("include", [])
                )
                continue
            events += self._item_events(spec, index, send_enc)
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"] if full_output else []
        usage = turn.usage if turn.usage is not None else _default_usage(rec, turn.output)
        if turn.error_event is not None:
            events.append({"type": "error", "error": turn.error_event})
        if turn.fail is not None:
            events.append(
                {"type": "response.failed", "response": response("failed", error=turn.fail, output=done)}
            )
        elif turn.incomplete is not None:
            details = {"reason": turn.incomplete}
            events.append(
                {
                    "type": "response.incomplete",
                    "response": response("incomplete", incomplete_details=details, usage=usage, output=done),
                }
            )
        elif turn.error_event is None:
            events.append(
                {"type": "response.completed", "response": response("completed", usage=usage, output=done)}
            )
        return _shaped(events, turn.shapes)

    def _item_events(self, spec: OutputSpec, index: int, send_enc: bool) -> list[dict[str, Any]]:
        if isinstance(spec, Text):
            return _message_events(spec, index)
        if isinstance(spec, Reasoning):
            enc = spec.encrypted_content or "enc_" + secrets.token_hex(16)
            if send_enc:
                with self._lock:
                    self.issued_encrypted_content.add(enc)
            return _reasoning_events(spec, index, enc if send_enc else None)
        return _call_events(spec, index)


def _check_tools(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """Like the backend: a tool type it only knows by another name, and a name over 64 characters
    (in tools, the history's calls or tool_choice), are 400s."""
    named: list[tuple[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        kind = str(tool.get("type", "")) if isinstance(tool, dict) else ""
        if kind.startswith(REFUSED_TOOL_PREFIXES):
            message = f"Invalid value: '{kind}'. Supported values are: 'function', 'custom', 'web_search'..."
            return _invalid(message, f"tools[{i}].type", "invalid_value")
        named.append((f"tools[{i}].name", tool.get("name") if isinstance(tool, dict) else None))
    for i, item in enumerate(body.get("input") or []):
        if isinstance(item, dict) and item.get("type") in ("function_call", "custom_tool_call"):
            named.append((f"input[{i}].name", item.get("name")))
    if isinstance(body.get("tool_choice"), dict):
        named.append(("tool_choice.name", body["tool_choice"].get("name")))
    for param, name in named:
        if isinstance(name, str) and len(name) > MAX_TOOL_NAME:
            message = (
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{MAX_TOOL_NAME}, but got a string with length {len(name)} instead."
            )
            return _invalid(message, param, "string_above_max_length")
    return None


def _event_item_id(event: dict[str, Any]) -> Any:
    item = event.get("item")
    return item.get("id") if isinstance(item, dict) else event.get("item_id")


def _interleave(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls' events as parallel calls really come: all announced first, their argument deltas
    alternating, the last one finished first."""
    calls = [
        e["item"]["id"]
        for e in events
        if e["type"] == "response.output_item.added"
        and e["item"].get("type") in ("function_call", "custom_tool_call")
    ]
    if len(calls) < 2:
        return events
    own = [e for e in events if _event_item_id(e) in calls]
    first = events.index(own[0])
    rest = [e for e in events if _event_item_id(e) not in calls]
    added = [e for e in own if e["type"] == "response.output_item.added"]
    done = [e for e in own if e["type"] == "response.output_item.done"][::-1]
    middle = {
        c: [e for e in own if _event_item_id(e) == c and e not in added and e not in done] for c in calls
    }
    mixed: list[dict[str, Any]] = []
    while any(middle.values()):
        for c in calls:
            if middle[c]:
                mixed.append(middle[c].pop(0))
    return rest[:first] + added + mixed + done + rest[first:]


def _shaped(events: list[dict[str, Any]], shapes: frozenset[str]) -> list[dict[str, Any]]:
    """The stream numbered and, for the Turn's opt-in STREAM_SHAPES, reshaped (see STREAM_SHAPES)."""
    unknown = shapes - STREAM_SHAPES
    if unknown:
        raise ValueError(f"unknown stream shapes: {sorted(unknown)}")
    if "interleaved" in shapes:
        events = _interleave(events)
    if "text_at_done" in shapes:
        messages = {e["item"]["id"] for e in events if e["type"] == "response.output_item.added"
                    and e["item"].get("type") == "message"}  # fmt: skip
        events = [
            e for e in events if _event_item_id(e) not in messages or e["type"] == "response.output_item.done"
        ]
    if "names_at_done" in shapes:
        events = [
            {**e, "item": {**e["item"], "name": ""}}
            if e["type"] == "response.output_item.added"
            and e["item"].get("type") in ("function_call", "custom_tool_call")
            else e
            for e in events
        ]
    out = [{"type": e["type"], "sequence_number": n, **e} for n, e in enumerate(events)]
    for event in out:
        if "no_output_index" in shapes:
            event.pop("output_index", None)
        if "no_sequence_number" in shapes:
            event.pop("sequence_number", None)
    return out


def _refresh_error(code: str, what: str) -> tuple[int, dict[str, Any]]:
    message = f"Your refresh token has {what}. Please try signing in again."
    return 401, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def _not_found(item_id: Any) -> tuple[int, dict[str, Any]]:
    message = (
        f"Item with id '{item_id}' not found. Items are not persisted when `store` is set to false. "
        "Try again with `store` set to true, or remove this item from your input."
    )
    return _invalid(message, "input")


def _check_message(item: dict[str, Any], i: int) -> tuple[int, dict[str, Any]] | None:
    role = item.get("role")
    if role == "system":
        return _detail("System messages are not allowed")
    content = item.get("content")
    for j, part in enumerate(content if isinstance(content, list) else []):
        kind = part.get("type") if isinstance(part, dict) else None
        if role == "assistant" and kind not in ("output_text", "refusal"):
            message = f"Invalid value: '{kind}'. Supported values are: 'output_text' and 'refusal'."
            return _invalid(message, f"input[{i}].content[{j}]", "invalid_value")
        if kind == "input_image":
            url = part.get("image_url")
            if not ((isinstance(url, str) and url.startswith(("data:", "https://"))) or part.get("file_id")):
                where = f"input[{i}].content[{j}]"
                return _detail(
                    f"Invalid input_image at {where}: needs image_url (data: or https URL) or file_id"
                )
    return None


def _message_events(spec: Text, index: int) -> list[dict[str, Any]]:
    item_id = _hex_id("msg")
    at = {"item_id": item_id, "output_index": index, "content_index": 0}
    part = {"type": "output_text", "text": spec.text, "annotations": list(spec.annotations)}
    item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
        *(
            {"type": "response.output_text.delta", **at, "delta": d, "logprobs": []}
            for d in _split(spec.text, spec.chunks)
        ),
        *(
            {"type": "response.output_text.annotation.added", **at, "annotation_index": n, "annotation": a}
            for n, a in enumerate(spec.annotations)
        ),
        {"type": "response.output_text.done", **at, "text": spec.text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part},
        {
            "type": "response.output_item.done",
            "output_index": index,
            "item": {**item, "status": "completed", "content": [part]},
        },
    ]


def _web_search_events(spec: WebSearch, index: int, with_sources: bool) -> list[dict[str, Any]]:
    """A hosted web search as the Responses API streams it: the item added, in_progress, searching,
    completed, the item done with its `action` (sources only when the request included them)."""
    item_id = _hex_id("ws")
    action: dict[str, Any] = {"type": "search", "query": spec.query}
    if with_sources:
        action["sources"] = [{"type": "url", "url": url} for url in spec.sources]
    at = {"output_index": index, "item_id": item_id}
    return [
        {"type": "response.output_item.added", "output_index": index,
         "item": {"type": "web_search_call", "id": item_id, "status": "in_progress"}},
        *({"type": f"response.web_search_call.{step}", **at} for step in ("in_progress", "searching", "completed")),
        {"type": "response.output_item.done", "output_index": index,
         "item": {"type": "web_search_call", "id": item_id, "status": "completed", "action": action}},
    ]  # fmt: skip


def _reasoning_events(spec: Reasoning, index: int, enc: str | None) -> list[dict[str, Any]]:
    item_id = _hex_id("rs")
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {"type": "reasoning", "id": item_id, "summary": []},
        }
    ]
    for s, summary in enumerate(spec.summary):
        at = {"item_id": item_id, "output_index": index, "summary_index": s}
        part = {"type": "summary_text", "text": summary}
        events += [
            {"type": "response.reasoning_summary_part.added", **at, "part": {**part, "text": ""}},
            *(
                {"type": "response.reasoning_summary_text.delta", **at, "delta": d}
                for d in _split(summary, 2)
            ),
            {"type": "response.reasoning_summary_text.done", **at, "text": summary},
            {"type": "response.reasoning_summary_part.done", **at, "part": part},
        ]
    summary_parts = [{"type": "summary_text", "text": s} for s in spec.summary]
    item = {"type": "reasoning", "id": item_id, "summary": summary_parts, "encrypted_content": enc}
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


def _call_events(spec: FunctionCall | CustomToolCall, index: int) -> list[dict[str, Any]]:
    custom = isinstance(spec, CustomToolCall)
    kind, field_name, payload = (
        ("custom_tool_call", "input", spec.input)
        if custom
        else ("function_call", "arguments", spec.arguments)
    )
    event = "response.custom_tool_call_input" if custom else "response.function_call_arguments"
    item_id = _hex_id("ctc" if custom else "fc")
    item = {
        "type": kind,
        "id": item_id,
        "call_id": spec.call_id or _hex_id("call"),
        "name": spec.name,
        field_name: "",
        "status": "in_progress",
    }
    at = {"item_id": item_id, "output_index": index}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        *({"type": f"{event}.delta", **at, "delta": d} for d in _split(payload, spec.chunks)),
        {"type": f"{event}.done", **at, field_name: payload},
        {
            "type": "response.output_item.done",
            "output_index": index,
            "item": {**item, field_name: payload, "status": "completed"},
        },
    ]


def _default_usage(rec: Recorded, output: list[OutputSpec]) -> dict[str, Any]:
    """Plausible numbers: ~4 bytes per token of request, ~4 characters per token of output."""
    chars, reasoning_tokens = 0, 0
    for spec in output:
        if isinstance(spec, Reasoning):
            reasoning_tokens += len("".join(spec.summary)) // 4 + 16
        elif isinstance(spec, WebSearch):
            chars += len(spec.query)
        else:
            chars += len(
                spec.text
                if isinstance(spec, Text)
                else spec.arguments
                if isinstance(spec, FunctionCall)
                else spec.input
            )
    inp = max(1, len(rec.raw) // 4)
    out = max(1, chars // 4) + reasoning_tokens
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": inp + out,
    }


# ---- the OpenAI API's shapes ---------------------------------------------------------------------------

_API_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}
_API_FAILURE_STATUS = {"context_length_exceeded": 400, "invalid_prompt": 400, "rate_limit_exceeded": 429}


def _api_error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind = _API_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _api_failure(turn: Turn) -> tuple[int, dict[str, Any]] | None:
    """How the OpenAI API reports a Turn's failure: (status, error body), None when it succeeds."""
    err = turn.error_event if turn.error_event is not None else turn.fail
    if err is None:
        return None
    status = _API_FAILURE_STATUS.get(err.get("code") or "", 500)
    return status, _api_error(status, str(err.get("message") or "The server had an error"), err.get("code"))


def _chat_calls(output: list[OutputSpec]) -> list[dict[str, Any]]:
    """The Turn's tool calls as a chat message's `tool_calls` (reasoning and text are not calls)."""
    calls: list[dict[str, Any]] = []
    for spec in output:
        if isinstance(spec, FunctionCall):
            function = {"name": spec.name, "arguments": spec.arguments}
            calls.append({"id": spec.call_id or _hex_id("call"), "type": "function", "function": function})
        elif isinstance(spec, CustomToolCall):
            custom = {"name": spec.name, "input": spec.input}
            calls.append({"id": spec.call_id or _hex_id("call"), "type": "custom", "custom": custom})
    return calls


def _chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Responses usage numbers under the Chat Completions names."""
    inp, out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        "prompt_tokens": inp,
        "completion_tokens": out,
        "total_tokens": usage.get("total_tokens", inp + out),
        "prompt_tokens_details": {
            "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
        },
        "completion_tokens_details": {
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)
        },
    }


def _chat_finish(turn: Turn, has_calls: bool) -> str:
    if turn.incomplete is not None:
        return "content_filter" if turn.incomplete == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def _chat_base(body: dict[str, Any], obj: str) -> dict[str, Any]:
    chat_id, now = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    return {"id": chat_id, "object": obj, "created": now, "model": body["model"], "service_tier": "default",
            "system_fingerprint": "fp_fake"}  # fmt: skip


def _chat_completion(turn: Turn, body: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    calls = _chat_calls(turn.output)
    content = "".join(s.text for s in turn.output if isinstance(s, Text))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content or None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _chat_finish(turn, bool(calls)),
    }
    return {**_chat_base(body, "chat.completion"), "choices": [choice], "usage": _chat_usage(usage)}


def _chat_chunks(turn: Turn, body: dict[str, Any], usage: dict[str, Any]) -> list[Any]:
    """The `data:` payloads of a chat stream: a role chunk, content and tool-call deltas (id, type and
    name only in a call's first delta), the finish chunk, the usage chunk when asked for, `[DONE]`;
    a failure ends it with an `{"error": ...}` chunk instead."""
    base = _chat_base(body, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    calls = _chat_calls(turn.output)
    index = 0
    for spec in turn.output:
        if isinstance(spec, Text):
            chunks += [chunk({"content": piece}) for piece in _split(spec.text, spec.chunks)]
        elif isinstance(spec, FunctionCall):
            head = {**calls[index], "function": {"name": spec.name, "arguments": ""}}
            chunks.append(chunk({"tool_calls": [{"index": index, **head}]}))
            chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                       for piece in _split(spec.arguments, spec.chunks)]  # fmt: skip
            index += 1
        elif isinstance(spec, CustomToolCall):
            chunks.append(chunk({"tool_calls": [{"index": index, **calls[index]}]}))
            index += 1
    failure = _api_failure(turn)
    if failure:
        return [*chunks, failure[1]]
    chunks.append(chunk({}, _chat_finish(turn, bool(calls))))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": _chat_usage(usage)})
    return [*chunks, "[DONE]"]


# ---- the demo's scripted model -----------------------------------------------------------------------


DEMO_COMMAND = "echo hello from the codex-api-proxy demo"


class DemoModel:
    """A tiny scripted model for `codex-api-proxy demo`, installed as the fake's `default_turn`: text
    for a plain prompt, a real tool call when tools are offered (Bash `echo` for Claude Code,
    `exec_command`/`shell`/`shell_command` for the Codex CLI, the first function for anyone else), and after the tool
    ran, an answer quoting its result, so a newcomer sees a whole tool round trip with no login."""

    def __call__(self, rec: Recorded) -> Turn:
        body = rec.body if isinstance(rec.body, dict) else {}
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
        result = self.tool_result(items)
        if result is not None:
            output = result.split("\nOutput:\n", 1)[-1].strip()  # Codex's exec_command puts a header first
            quoted = output.splitlines()[0][:200] if output else "(no output)"
            return Turn(output=[text(f"The tool answered: {quoted}")])
        call = self.tool_call([t for t in body.get("tools") or [] if isinstance(t, dict)])
        if call is not None:
            return Turn(output=[text("Let me run a tool for that."), call])
        return Turn(
            output=[text(f"Hello from the codex-api-proxy demo model. You said: {self.prompt(items)!r}")]
        )

    @staticmethod
    def tool_result(items: list[Any]) -> str | None:
        """The output of the last tool call, when nothing the user said came after it."""
        for item in reversed(items):
            if not isinstance(item, dict):
                continue
            if item.get("type") in ("function_call_output", "custom_tool_call_output"):
                output = item.get("output")
                if isinstance(output, list):  # content parts
                    output = " ".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
                return str(output)
            if item.get("role") == "user":
                return None
        return None

    @staticmethod
    def tool_call(tools: list[dict[str, Any]]) -> FunctionCall | None:
        functions = {t.get("name"): t for t in tools if t.get("type") == "function" and t.get("name")}
        if "Bash" in functions:
            return function_call("Bash", {"command": DEMO_COMMAND, "description": "Say hello"})
        if "exec_command" in functions:
            return function_call("exec_command", {"cmd": DEMO_COMMAND})
        if "shell" in functions:
            return function_call("shell", {"command": ["bash", "-lc", DEMO_COMMAND]})
        if "shell_command" in functions:  # the Codex CLI's shell tool for some models
            return function_call("shell_command", {"command": DEMO_COMMAND})
        if not functions:
            return None
        name, tool = next(iter(functions.items()))
        return function_call(str(name), _sample_arguments(tool.get("parameters") or {}))

    @staticmethod
    def prompt(items: list[Any]) -> str:
        for item in reversed(items):
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                if isinstance(content, list):
                    content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
                return str(content or "")[-120:]
        return ""


def _sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that satisfy a function's JSON schema well enough for a demo: every required field."""
    samples = {"string": "demo", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    args: dict[str, Any] = {}
    for name in schema.get("required") or list(properties)[:1]:
        prop = properties.get(name) or {}
        kind = prop.get("type", "string")
        args[name] = (
            prop["enum"][0]
            if prop.get("enum")
            else samples.get(kind if isinstance(kind, str) else "string", "demo")
        )
    return args
