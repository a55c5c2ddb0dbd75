"""The addon that owns the upstream transport (pooled client, relay server) for the proxy's lifetime,
and the process settings it needs (descriptor limit, what happens and is logged at that limit)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import socket
import sys
import time
from typing import Any

from mitmproxy import ctx

from .. import __version__
from ..core.limits import MIB, MITMPROXY_BODY
from .mitm_patches import json_error_page
from .runtime import Runtime

log = logging.getLogger("codex_api_proxy")

BODY_SIZE_LIMIT = f"{MITMPROXY_BODY // MIB}m"  # mitmproxy's own cut for bodies of no declared length


OPEN_MAX = 10240  # macOS: setrlimit refuses a soft descriptor limit above this (its <sys/syslimits.h>)
_SHORTAGE = (errno.EMFILE, errno.ENFILE)
_REFUSAL = json_error_page(503, "no file descriptor left for another connection; retry shortly")


def raise_fd_limit() -> None:
    """Each client holds two sockets (its own and the relay's) plus one upstream: the default soft
    limit (1,024 on Linux, 256 on macOS) locks every client out at a few hundred idle connections.
    macOS reports an unlimited hard limit but refuses any soft limit above OPEN_MAX, so there the
    soft limit is raised to min(hard, OPEN_MAX)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        if sys.platform == "darwin":
            target = min(target, OPEN_MAX)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.debug("could not raise the file descriptor limit from %d", soft)


def descriptor_shortage(record: logging.LogRecord) -> bool:
    """A log record about running out of descriptors, whoever logs it: asyncio's accept failure,
    mitmproxy's "Unhandled error in task." around the same OSError, or our own line."""
    if "out of system resource" in record.getMessage() or "no file descriptor left" in record.getMessage():
        return True
    error = record.exc_info[1] if record.exc_info else None
    return isinstance(error, OSError) and error.errno in _SHORTAGE


class OncePerInterval(logging.Filter):
    """Lets a repeated kind of record (an accept failure, once per attempt and per listener) through
    once a minute, with how many were held back."""

    def __init__(self, matches: Any = descriptor_shortage, interval: float = 60.0) -> None:
        super().__init__()
        self.matches, self.interval, self.last, self.dropped = matches, interval, -interval, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.matches(record):
            return True
        now = time.monotonic()
        if now - self.last < self.interval:
            self.dropped += 1
            return False
        if self.dropped:
            record.msg = f"{record.msg} ({self.dropped} more like it in the last minute)"
        self.last, self.dropped = now, 0
        return True


class AcceptGuard:
    """At the descriptor limit a new client would hang: accept() fails, asyncio stops listening for a
    second and tries again, and meanwhile the kernel keeps the client's connection in the backlog,
    established and unanswered. One descriptor is kept in reserve; when accept() fails for want of
    descriptors, the reserve is let go and every waiting client is accepted, answered 503 (JSON) and
    closed, so each one learns at once. The failure is logged once a minute (OncePerInterval)."""

    def __init__(self) -> None:
        self.reserve: int | None = None
        self.previous: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reserve = os.open(os.devnull, os.O_RDONLY)
        self.previous = loop.get_exception_handler()  # mitmproxy's, which logs and goes on
        loop.set_exception_handler(self.handle)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.get_exception_handler() == self.handle:
            loop.set_exception_handler(self.previous)
        if self.reserve is not None:
            os.close(self.reserve)
            self.reserve = None

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error, listener = context.get("exception"), context.get("socket")
        if isinstance(error, OSError) and error.errno in _SHORTAGE and listener is not None:
            refused = self.refuse_waiting(listener.fileno())
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            log.error("no file descriptor left (limit %d): %d waiting client(s) refused with 503; "
                      "close idle clients or raise the limit (ulimit -n)", soft, refused)  # fmt: skip
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def refuse_waiting(self, fd: int) -> int:
        if self.reserve is None:
            return 0
        os.close(self.reserve)
        self.reserve, refused = None, 0
        listener = socket.socket(fileno=fd)  # the listener's own descriptor, not a copy: detached below
        try:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # none left waiting, or no descriptor even now
                    break
                refused += 1
                with conn:
                    conn.setblocking(False)
                    try:
                        conn.send(_REFUSAL)
                        conn.shutdown(socket.SHUT_WR)
                        conn.recv(1 << 16)  # what the client sent already: unread, the close would be a reset
                    except OSError:
                        pass
        finally:
            listener.detach()
            with contextlib.suppress(OSError):  # taken meanwhile: the next shortage tries again
                self.reserve = os.open(os.devnull, os.O_RDONLY)
        return refused


class UpstreamRelay:
    """Owns the pooled upstream client and the loopback relay server for the life of the proxy."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.guard = AcceptGuard()
        self.shortage_log = OncePerInterval()

    async def running(self) -> None:
        if ctx.options.body_size_limit is None:  # under mitmdump/mitmweb: bound chunked uploads too
            ctx.options.update(body_size_limit=BODY_SIZE_LIMIT)
        if not ctx.options.keep_host_header:  # else reverse mode replaces the Host the boundary checks
            ctx.options.update(keep_host_header=True)
        raise_fd_limit()
        # on every handler (records from any logger), and on the loggers known to raise them
        for target in (
            *logging.getLogger().handlers,
            logging.getLogger("asyncio"),
            logging.getLogger("mitmproxy"),
        ):
            target.addFilter(self.shortage_log)
        self.guard.install(asyncio.get_running_loop())
        await self.runtime.start_transport()
        # what is alive now lives as long as the process (mitmproxy, our modules, the transport):
        # kept out of every later full collection, which otherwise walks it all holding the GIL
        # (36-85 ms here, after a large body: ApiGateway.release_after)
        gc.collect()
        gc.freeze()
        log.info("codex-api-proxy %s ready; upstream %s", __version__, self.runtime.settings.upstream_url)

    async def done(self) -> None:
        self.guard.uninstall(asyncio.get_running_loop())
        await self.runtime.stop_transport()
