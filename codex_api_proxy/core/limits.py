"""Every size limit and every fixed timeout of the proxy, with the reason for each value.

The timeouts a person may change (connect, first byte, idle, heartbeat) are options (options.py); the
token refresh's own deadlines live with it (auth/credentials.py).
"""

from __future__ import annotations

KIB, MIB = 1 << 10, 1 << 20

# Heads: a request head from a client (checked on arrival by mitm_patches and on its fields by the
# boundary), the head mitmproxy sends the relay, an upstream's response head. Real ones are a few KiB;
# beyond this is a flood or not an HTTP peer we know.
MAX_HEAD = 64 * KIB  # also a chunked body's trailers (relay/http11.py)
MAX_HEADERS = 200  # header fields in a client's request
MAX_CONNECT_HEAD = 16 * KIB  # an outbound proxy's answer to CONNECT is a few lines
MAX_CHUNK_LINE = 4096  # a chunk-size line (with its extensions) longer than this is not a server we know

# Bodies
MAX_BODY = 64 * MIB  # a client's request, declared or once decoded: beyond any real prompt with images
MITMPROXY_BODY = 80 * MIB  # mitmproxy's own cut for bodies of no declared length, and the relay's cap:
#                            above MAX_BODY, so the boundary's clear 413 comes first
MAX_JSON_ANSWER = 64 * MIB  # a non-streamed upstream answer relayed to the client
MAX_UPSTREAM_JSON = 16 * MIB  # a small upstream document the proxy reads itself (the model catalog)
MAX_ERROR_BODY = 1 * MIB  # an upstream error body: only its message and fields are kept
INSPECT_CHARS = 64 * KIB  # of the translated request shown in mitmweb's flow comment
OFF_LOOP_BYTES = 1 * MIB  # a body larger than this is parsed and translated in a worker thread
BODY_SLICE = (
    1 * MIB
)  # a larger upstream request body is written in slices of this, each once the socket took the last
RELEASE_DELAY = 1.0  # seconds after a large body's flow ends before its memory is handed back

# Client connections to the proxy (mitmproxy's, timed in mitm_patches)
CLIENT_IDLE_TIMEOUT = 60.0  # a client connection with no request in it is closed after this
CLIENT_HEAD_TIMEOUT = 5.0  # a request head must arrive within this of its first byte (408 after)

# The relay's connections from mitmproxy (on loopback)
RELAY_IDLE_TIMEOUT = 60.0  # an idle keep-alive connection (mitmproxy opens a fresh one when it needs one)
RELAY_HEAD_TIMEOUT = 5.0  # a request (head and body) must arrive within this of its first byte

# Pooled upstream connections
UPSTREAM_KEEPALIVE = 60.0  # an idle one is not reused after this (servers close theirs about then)
MAX_IDLE_PER_ORIGIN = 32
# A reused connection that sends back no byte within this is taken for dead (a peer gone while it sat
# in the pool answers nothing, ever) and the request goes once more on a fresh connection. The Codex
# backend sends its head at once and its events after, so a live server is far inside this.
REUSED_FIRST_BYTE_TIMEOUT = 10.0
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 15, 5, 3  # TCP probes: a dead peer found in 30 s
