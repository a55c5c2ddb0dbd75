"""Outbound connections as people's networks need them: direct, or through the proxy they configured.

A person behind a proxy has one of: an HTTP proxy (CONNECT for https, absolute-form requests for
http), an HTTPS proxy (the same, spoken to in TLS: the proxy URL says https://), or a SOCKS5 proxy
(Clash, V2Ray, ssh -D; `socks5h://` lets the proxy resolve the name). `connect` opens the connection
through whichever applies and hands it to the caller's protocol, TLS to the origin included, so the
pool above never knows which. SOCKS is spoken by python-socks, a maintained library: its answer is a
plain connected socket, which asyncio then wraps like any other.

Failures at the proxy name the proxy and the variable that set it: a person fixing it needs to know
which of their exports is wrong.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl

from python_socks import ProxyError as SocksError
from python_socks import ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

from ..core.errors import ProxyError
from ..core.limits import MAX_CONNECT_HEAD
from ..core.proxies import OutboundProxy
from . import http11


def trust_context() -> ssl.SSLContext:
    """System trust as curl and the Codex CLI use it: SSL_CERT_FILE/SSL_CERT_DIR, else certifi. Used for
    the origin and for an HTTPS proxy alike, by the pool and by the token refresh."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if not (cafile or capath):
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:  # pragma: no cover - httpx depends on certifi
            pass
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.set_alpn_protocols(["http/1.1"])
    return context


def absolute_form(proxy: OutboundProxy | None, scheme: str) -> bool:
    """Whether requests to an origin of this scheme go to the proxy itself, in absolute-form and with
    Proxy-Authorization (plain http through an HTTP(S) proxy); every other way is a tunnel."""
    return proxy is not None and not proxy.socks and scheme == "http"


def _refused(proxy: OutboundProxy, what: str) -> ProxyError:
    return ProxyError(
        502, f"outbound proxy {proxy.shown} (from {proxy.source}) {what}", code="upstream_unreachable"
    )


async def connect(
    protocol: asyncio.Protocol,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    proxy: OutboundProxy | None,
) -> None:
    """Connect `protocol` to host:port (TLS when `tls` is given), through `proxy` if one applies. Raises
    OSError or ssl.SSLError for the origin's own failures, ProxyError 502 for the proxy's."""
    loop = asyncio.get_running_loop()
    origin_name = host if tls is not None else None
    if proxy is None:
        await loop.create_connection(lambda: protocol, host, port, ssl=tls, server_hostname=origin_name)
    elif proxy.socks:
        sock = await _socks(proxy, host, port)
        await loop.create_connection(lambda: protocol, sock=sock, ssl=tls, server_hostname=origin_name)
    elif tls is None:  # absolute_form: the connection is to the proxy itself
        await _to_proxy(protocol, proxy)
    else:
        transport = await _tunnel(proxy, host, port)
        try:
            wrapped = await loop.start_tls(transport, protocol, tls, server_hostname=host)
        except BaseException:
            transport.abort()
            raise
        assert wrapped is not None
        protocol.connection_made(wrapped)  # start_tls hands the protocol its transport without telling it


async def _to_proxy(protocol: asyncio.Protocol, proxy: OutboundProxy) -> asyncio.Transport:
    """A connection to an HTTP(S) proxy: TLS to the proxy itself when its URL says https://."""
    tls = proxy.scheme == "https"
    try:
        transport, _ = await asyncio.get_running_loop().create_connection(
            lambda: protocol,
            proxy.host,
            proxy.port,
            ssl=trust_context() if tls else None,
            server_hostname=proxy.host if tls else None,
        )
    except ssl.SSLError as exc:
        raise _refused(proxy, f"failed the TLS handshake ({exc.reason or exc})") from None
    except OSError as exc:
        raise _refused(proxy, f"is unreachable ({exc.strerror or type(exc).__name__})") from None
    assert isinstance(transport, asyncio.Transport)
    return transport


class _ConnectAnswer(asyncio.Protocol):
    """The proxy's answer to CONNECT, read by the one HTTP/1.1 codec: a 2xx ends HTTP on the
    connection (what follows is the tunnel), any other answer is a head with its body."""

    def __init__(self) -> None:
        self.head: asyncio.Future[http11.Response] = asyncio.get_running_loop().create_future()
        self.parser = http11.Parser("client", max_head=MAX_CONNECT_HEAD)
        self.parser.next_message("CONNECT")

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            self.parser.feed(data)  # kept: bytes in the tunnel before our TLS hello are an error
            return
        try:
            events = self.parser.feed(data)
        except http11.ProtocolError as error:
            self.head.set_exception(ConnectionError(f"answered CONNECT with broken HTTP ({error.message})"))
            return
        if events and isinstance(events[0], http11.Response):
            self.head.set_result(events[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionError("closed the connection during CONNECT"))


async def _tunnel(proxy: OutboundProxy, host: str, port: int) -> asyncio.Transport:
    """A CONNECT tunnel to host:port through an HTTP(S) proxy, ready for the origin's TLS."""
    answer = _ConnectAnswer()
    transport = await _to_proxy(answer, proxy)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        fields = [("host", authority)]
        if authorization := proxy.basic_authorization():
            fields.append(("proxy-authorization", authorization))
        transport.write(http11.request_head("CONNECT", authority, fields))
        try:
            head = await answer.head
        except ConnectionError as exc:
            raise _refused(proxy, str(exc)) from None
        status = head.status
        if status == 407:
            raise _refused(proxy, "asks for credentials (407): check the user and password in its URL")
        if not 200 <= status < 300:
            raise _refused(proxy, f"refused to connect to {authority} ({status} {head.reason[:80]!r})")
        if answer.parser.buffered:
            raise _refused(proxy, "sent bytes into the tunnel before the origin spoke")
    except BaseException:
        transport.abort()
        raise
    return transport


async def _socks(proxy: OutboundProxy, host: str, port: int) -> socket.socket:
    """A socket connected to host:port through a SOCKS5 proxy (no auth, or user/password)."""
    socks = SocksProxy(
        ProxyType.SOCKS5,
        proxy.host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        rdns=proxy.scheme == "socks5h",  # socks5h: the proxy resolves the name; socks5: we do
    )
    try:
        return await socks.connect(host, port)
    except ProxyTimeoutError:
        raise TimeoutError from None  # the caller's connect timeout names it
    except SocksError as exc:  # the proxy answered: refused, bad credentials, no route
        raise _refused(proxy, f"refused to connect to {host}:{port} ({exc})") from None
    except OSError as exc:  # python-socks' ProxyConnectionError and resolution errors
        raise _refused(proxy, f"is unreachable ({exc.strerror or exc})") from None
