"""The addon that owns the upstream transport (pooled client, relay server) for the proxy's lifetime,
and the process settings it needs (descriptor limit, a bounded log of accept failures)."""

from __future__ import annotations

import logging
import resource
import time

from mitmproxy import ctx

from .. import __version__
from ..core.limits import MIB, MITMPROXY_BODY
from .runtime import Runtime

log = logging.getLogger("codex_api_proxy")

BODY_SIZE_LIMIT = f"{MITMPROXY_BODY // MIB}m"  # mitmproxy's own cut for bodies of no declared length


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
