"""The upstream relay: mitmproxy's upstream for every generation call, a loopback server in its own loop.

mitmproxy forwards each translated flow here and streams the answer back through the family's chunk
translator. The relay does what mitmproxy cannot (reference/mitmproxy.md §5, pitfalls 5-8):
- credentials: injects the bearer and account headers (so flows shown in mitmweb carry no token),
  refreshes after an upstream 401 and retries exactly once;
- transport failures: a refused connection or a silent upstream becomes a JSON 502/504 before the
  headers, or an in-band `proxy.error` event inside a stream, never mitmproxy's HTML page or a
  silently truncated body;
- heartbeats: a `proxy.heartbeat` event while the upstream is silent, so translators can keep clients
  alive (Anthropic `ping`);
- one pooled upstream connection set for all clients (mitmproxy pools per client connection only).

Only requests carrying this process's random secret are served, so other local processes cannot
borrow the login through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import platform
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from . import __version__
from .credentials import Auth, Credentials
from .errors import ERROR_EVENT, HEARTBEAT_EVENT, ProxyError, from_upstream
from .settings import Settings
from .sse import frame

log = logging.getLogger(__name__)

SECRET_HEADER = "x-cxp-relay"
STREAM_HEADER = "x-cxp-stream"  # the flow's id, so the addon can end its upstream read early
INTERNAL_PREFIX = "x-cxp-"  # headers between the addon and the relay, never sent upstream
ROUTES = ("codex", "openai")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "authorization",
        "x-api-key",
    }
)
_PASSED_BACK = ("content-type", "retry-after", "x-request-id", "request-id", "openai-processing-ms")
_PASSED_BACK_PREFIXES = ("x-codex-", "x-ratelimit-")
_HEARTBEAT = frame({"type": HEARTBEAT_EVENT}, HEARTBEAT_EVENT)
_MAX_ERROR_BODY = 1 << 20


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def default_user_agent() -> str:
    return f"codex-api-proxy/{__version__} ({platform.system()} {platform.release()}; {platform.machine()})"


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _error_response(error: ProxyError) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(error.openai_body()).encode()
    return error.status, {"content-type": "application/json", **error.headers()}, body


class Upstream:
    """Authenticated upstream calls with one pooled client: used by the relay server and by the addon
    for small JSON calls (/v1/models)."""

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        self.settings = settings
        self.credentials = credentials
        self.client = httpx.AsyncClient(
            proxy=settings.outbound_proxy,
            trust_env=settings.outbound_proxy is None,  # HTTPS_PROXY/NO_PROXY/SSL_CERT_FILE as usual
            timeout=httpx.Timeout(settings.idle_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=32, keepalive_expiry=60),
            follow_redirects=False,
        )
        credentials.set_client(self.client)
        self.user_agent = default_user_agent()

    def url(self, route: str, path: str) -> str:
        base = self.settings.upstream_url if route == "codex" else self.settings.openai_url
        return base.rstrip("/") + "/" + path.lstrip("/")

    async def send(
        self, route: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        """Open a streamed upstream response; after a 401 with ChatGPT tokens, refresh and retry once.
        Raises ProxyError for credential and transport failures (502 unreachable, 504 timeout)."""
        auth = await self.credentials.get()
        response = await self._open(route, method, path, body, headers, auth)
        if response.status_code == 401 and auth.mode == "chatgpt" and route == "codex":
            await response.aclose()
            log.info("upstream answered 401; refreshing the access token and retrying once")
            auth = await self.credentials.after_unauthorized(auth)
            response = await self._open(route, method, path, body, headers, auth)
        return response

    async def _open(
        self, route: str, method: str, path: str, body: bytes | None, headers: dict[str, str], auth: Auth
    ) -> httpx.Response:
        url = self.url(route, path)
        out = {
            k: v
            for k, v in headers.items()
            if k.lower() not in _HOP_BY_HOP and not k.lower().startswith(INTERNAL_PREFIX)
        }
        out.setdefault("user-agent", self.user_agent)
        out["accept-encoding"] = "identity"  # translators read raw bytes
        out.update(auth.headers())
        request = self.client.build_request(method, url, content=body, headers=out)
        try:
            return await asyncio.wait_for(
                self.client.send(request, stream=True), self.settings.first_byte_timeout
            )
        except (TimeoutError, httpx.TimeoutException) as exc:
            kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "response"
            raise ProxyError(
                504, f"upstream {kind} timed out ({request.url.host})", code="upstream_timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise ProxyError(
                502,
                f"upstream unreachable ({request.url.host}): {type(exc).__name__}",
                code="upstream_unreachable",
            ) from None

    async def json(self, route: str, path: str) -> Any:
        """GET a small JSON document; HTTP errors become ProxyError at the upstream status."""
        response = await self.send(route, "GET", path, None, {"accept": "application/json"})
        try:
            body = await response.aread()
        except httpx.HTTPError:
            raise ProxyError(
                502, "upstream connection failed while reading", code="upstream_unreachable"
            ) from None
        finally:
            await response.aclose()
        if response.status_code >= 400:
            raise from_upstream(response.status_code, body, response.headers)
        try:
            return json.loads(body)
        except ValueError:
            raise ProxyError(
                502, "upstream answered with invalid JSON", code="bad_upstream_response"
            ) from None

    async def aclose(self) -> None:
        await self.client.aclose()


class RelayServer:
    """The loopback HTTP/1.1 endpoint mitmproxy forwards translated flows to."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.secret = secrets.token_urlsafe(24)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: dict[str, tuple[asyncio.Task[None], asyncio.Queue[bytes | ProxyError | None]]] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    def finish(self, stream_id: str) -> None:
        """The client's answer is already complete (a stop sequence, a failure it was told about):
        stop reading the upstream and end the relayed body now instead of when the model stops."""
        entry = self._streams.pop(stream_id, None)
        if entry is None:
            return
        pump, queue = entry
        pump.cancel()
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    def target(self, route: str, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{route}/{path.lstrip('/')}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                await self._handle(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # mitmproxy closed the connection (its client went away)
        except Exception:
            log.exception("relay connection failed")
        finally:
            writer.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
        return _Request(method, path, headers, body)

    async def _handle(self, request: _Request, writer: asyncio.StreamWriter) -> None:
        route, _, path = request.path.lstrip("/").partition("/")
        if (
            not secrets.compare_digest(request.headers.get(SECRET_HEADER, ""), self.secret)
            or route not in ROUTES
        ):
            await self._respond(
                writer, *_error_response(ProxyError(403, "not a codex-api-proxy relay request"))
            )
            return
        try:
            response = await self.upstream.send(
                route, request.method, path, request.body or None, request.headers
            )
        except ProxyError as error:
            await self._respond(writer, *_error_response(error))
            return
        try:
            headers = {
                k: v
                for k, v in response.headers.items()
                if k in _PASSED_BACK or k.startswith(_PASSED_BACK_PREFIXES)
            }
            if response.status_code >= 400 or not headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                await self._respond_buffered(writer, response, headers)
            else:
                await self._respond_stream(writer, response, headers, request.headers.get(STREAM_HEADER, ""))
        finally:
            await response.aclose()

    async def _respond_buffered(
        self, writer: asyncio.StreamWriter, response: httpx.Response, headers: dict[str, str]
    ) -> None:
        """JSON answers and errors are small: read them whole, so a failure can still be a clean 502."""
        try:
            body = b""
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > _MAX_ERROR_BODY and response.status_code >= 400:
                    break
        except httpx.HTTPError:
            error = ProxyError(
                502, "upstream connection failed while reading the answer", code="upstream_unreachable"
            )
            await self._respond(writer, *_error_response(error))
            return
        await self._respond(writer, response.status_code, headers, body)

    async def _respond_stream(
        self, writer: asyncio.StreamWriter, response: httpx.Response, headers: dict[str, str], stream_id: str
    ) -> None:
        """Relay an SSE body chunk by chunk; heartbeats at event boundaries while the upstream is
        silent; a transport failure becomes a final `proxy.error` event."""
        head = f"HTTP/1.1 {response.status_code} {_reason(response.status_code)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((head + "transfer-encoding: chunked\r\n\r\n").encode("latin-1"))
        queue: asyncio.Queue[bytes | ProxyError | None] = asyncio.Queue(maxsize=256)

        async def pump() -> None:
            try:
                async for chunk in response.aiter_raw():
                    await queue.put(chunk)
                await queue.put(None)
            except httpx.TimeoutException:
                await queue.put(ProxyError(504, "upstream went silent mid-stream", code="upstream_timeout"))
            except httpx.HTTPError as exc:
                await queue.put(
                    ProxyError(
                        502,
                        f"upstream connection lost mid-stream ({type(exc).__name__})",
                        code="upstream_cut",
                    )
                )

        task = asyncio.create_task(pump())
        if stream_id:
            self._streams[stream_id] = (task, queue)
        at_boundary = True
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.upstream.settings.heartbeat)
                except TimeoutError:
                    if at_boundary:
                        self._chunk(writer, _HEARTBEAT)
                        await writer.drain()
                    continue
                if item is None:
                    break
                if isinstance(item, ProxyError):
                    log.warning("relay: %s", item.message)
                    self._chunk(writer, (b"" if at_boundary else b"\n\n") + frame(item.event(), ERROR_EVENT))
                    break
                self._chunk(writer, item)
                at_boundary = item.endswith((b"\n\n", b"\r\n\r\n"))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            self._streams.pop(stream_id, None)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        if data:
            writer.write(b"%x\r\n%b\r\n" % (len(data), data))

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        head = f"HTTP/1.1 {status} {_reason(status)}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write((head + f"content-length: {len(body)}\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
