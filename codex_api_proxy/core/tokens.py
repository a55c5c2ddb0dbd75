"""Local input-token counts for Anthropic Messages bodies (`/v1/messages/count_tokens` and the
`max_tokens: 1` probe Claude Code sends when count_tokens is missing).

The request is answered by a GPT model, so text is counted with o200k_base (via `bpe_openai`, which
ships its BPE file: tiktoken would try to download it). Everything the model reads is counted: the
system prompt, every block type, and the tool definitions (name, description, schema JSON), which are
most of a Claude Code request. Non-text inputs are estimated:

- images: OpenAI's high-detail formula (fit in 2048x2048, shortest side to 768, 170 tokens per
  512-pixel tile plus 85) when PNG, GIF or JPEG dimensions can be read from the data; otherwise
  IMAGE_TOKENS (a 768x2048 image rounded up);
- PDF documents: PDF_PAGE_TOKENS per page (page text plus page image), pages counted in the file.

Calibration: the backend reports the input tokens it really counted at the end of every turn; per
conversation (its prompt_cache_key) the ratio of that number to the local count of the same request is
kept (a `Calibration`, one per proxy: CALIBRATION_SIZE conversations, the latest turn's ratio, clamped
to RATIO_BOUNDS), and later counts for that conversation are scaled by it, so Claude Code compacts where
the model's window really ends rather than where o200k and our overhead guesses say.

Each piece of text (a tool definition, a system block, a message block) is counted on its own, and
pieces of CACHE_MIN_CHARS or more are remembered by digest (a `PieceCache`: CACHE_SIZE entries, oldest
dropped first):
Claude Code re-sends the same tools and system prompt every turn, and its /context view fires many
counts over the same tools at once. A 114 KB Claude Code request counts in about 10 ms the first time
and about 1 ms when only its last message is new.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import math
import re
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request

log = logging.getLogger(__name__)

IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 1500
BASE_TOKENS = 3  # reply priming
MESSAGE_TOKENS = 4  # role and separators around each message (system prompt included)
TOOL_TOKENS = 8  # function wrapper around each tool definition
CACHE_MIN_CHARS = 512
CACHE_SIZE = 4096
CALIBRATION_SIZE = 1024
SLICE_CHARS = 1 << 17  # a text longer than this is counted in slices (see count_text)
RATIO_BOUNDS = (0.5, 2.0)  # beyond these the "same request" was not the same: do not trust the ratio
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?!s)")


@functools.cache
def _encoding() -> Any:
    """Loaded on the first count, not at startup: about 1.5 s and ~130 MB of resident memory (the
    Rust tokenizer maps the rank tables of every encoding it ships), which a proxy whose clients never
    count tokens should not carry. The Rust tokenizer is used directly: bpe_openai's tiktoken-style
    wrapper would add a 200k-entry Python dict for nothing but `count`."""
    with warnings.catch_warnings():  # bpe_openai 0.1.4 reads its data with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        from bpe_openai import _bindings

        return _bindings.tokenizer_for_encoding("o200k_base")


def count_text(text: str) -> int:
    """o200k_base tokens of a plain string (special-token lookalikes count as text).

    The tokenizer holds the GIL for the whole call (~30 ms per MiB): a long text is counted in
    slices cut after whitespace, where its pre-tokenizer splits anyway, so a count in a worker
    thread lets the event loop run between slices."""
    if len(text) <= SLICE_CHARS:
        return _encoding().count(text) if text else 0
    total, start = 0, 0
    while start < len(text):
        end = start + SLICE_CHARS
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = cut + 1 if cut > start else end
        total += _encoding().count(text[start:end])
        start = end
    return total


@dataclass
class PieceCache:
    """Counts of long pieces of text by digest (see the module docstring); thread-safe: counts run in
    worker threads."""

    size: int = CACHE_SIZE
    counts: dict[bytes, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, text: str) -> int:
        if len(text) < CACHE_MIN_CHARS:
            return count_text(text)
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self.lock:
            known = self.counts.get(key)
        if known is not None:
            return known
        count = count_text(text)
        with self.lock:
            if len(self.counts) >= self.size:
                del self.counts[next(iter(self.counts))]
            self.counts[key] = count
        return count


def count_tokens(body: dict[str, Any], pieces: PieceCache | None = None) -> int:
    """Estimated input tokens of an Anthropic Messages request body (`pieces`: remembered counts)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise bad_request("messages: a list of messages is required", "messages")
    counter = _Counter()
    system = body.get("system")
    if system:
        counter.fixed += MESSAGE_TOKENS
        counter.content(system)
    for message in messages:
        counter.fixed += MESSAGE_TOKENS
        if isinstance(message, dict):
            counter.content(message.get("content"))
    for tool in body.get("tools") or []:
        # a deferred tool (tool search) reaches the model only once a tool_reference has loaded it
        if isinstance(tool, dict) and (
            tool.get("defer_loading") is not True or tool.get("name") in counter.loaded
        ):
            counter.fixed += TOOL_TOKENS
            schema = json.dumps(tool["input_schema"], ensure_ascii=False) if tool.get("input_schema") else ""
            counter.texts.append(
                "\n".join(str(tool.get(k) or "") for k in ("name", "description")) + "\n" + schema
            )
    count = pieces.count if pieces is not None else count_text
    return BASE_TOKENS + counter.fixed + sum(count(t) for t in counter.texts if t)


class _Counter:
    """Collects the text of every block and fixed estimates for the rest."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fixed = 0
        self.loaded: set[str] = set()  # tool names a tool_reference loaded

    def content(self, content: Any) -> None:
        if isinstance(content, str):
            self.texts.append(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict):
                    self.block(block)

    def block(self, block: dict[str, Any]) -> None:
        kind = block.get("type")
        if kind == "text":
            self.texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            self.texts.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            self.texts.append(
                f"{block.get('name') or ''}\n{json.dumps(block.get('input'), ensure_ascii=False)}"
            )
        elif kind == "tool_reference":
            self.loaded.add(str(block.get("tool_name") or ""))
            self.texts.append(str(block.get("tool_name") or ""))
        elif kind in ("tool_result", "search_result"):
            self.content(block.get("content"))
        elif kind == "image":
            self.fixed += image_tokens(block.get("source"))
        elif kind == "document":
            self.document(block.get("source"))

    def document(self, source: Any) -> None:
        if not isinstance(source, dict):
            return
        kind = source.get("type")
        if kind == "text":
            self.texts.append(str(source.get("data") or ""))
        elif kind == "content":
            self.content(source.get("content"))
        elif kind == "base64":
            self.fixed += PDF_PAGE_TOKENS * max(1, len(_PDF_PAGE.findall(_decode(source.get("data")))))
        else:
            self.fixed += PDF_PAGE_TOKENS


def _decode(data: Any, limit: int | None = None) -> bytes:
    if not isinstance(data, str):
        return b""
    chunk = data[: limit - limit % 4] if limit else data
    try:
        return base64.b64decode(chunk)
    except (binascii.Error, ValueError):
        return b""


def image_tokens(source: Any) -> int:
    """High-detail tokens from the image's own dimensions when cheap to read, else IMAGE_TOKENS."""
    size = _image_size(_decode(source.get("data"), 65536)) if isinstance(source, dict) else None
    if not size:
        return IMAGE_TOKENS
    width, height = size
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def _image_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame marker (C0-CF except C4, C8, CC)."""
    pos = 2
    while pos + 9 < len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(head[pos + 5 : pos + 7], "big")
            width = int.from_bytes(head[pos + 7 : pos + 9], "big")
            return (width, height) if width and height else None
        pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    return None


@dataclass
class Calibration:
    """Upstream/local input-token ratios by conversation, the most recently used kept (see the module
    docstring), and the counts of pieces they share. One per proxy (Runtime.calibration). Thread-safe:
    counts run in worker threads, turns end on the event loop.

    Only conversations whose client has asked for a count are calibrated, and the turn's own count
    runs in a worker: a proxy whose clients never count never loads the tokenizer (1.5 s, 130 MB),
    and no turn blocks the event loop tokenising its prompt."""

    size: int = CALIBRATION_SIZE
    ratios: OrderedDict[str, float] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    asked: OrderedDict[str, None] = field(default_factory=OrderedDict)  # keys a count was asked for
    pending: dict[str, Future[None]] = field(default_factory=dict)  # turn counts still running
    pieces: PieceCache = field(default_factory=PieceCache)
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="calibration")
    )  # its thread starts with the first turn to count

    def count(self, body: dict[str, Any]) -> int:
        """The local count of a Messages body, before calibration."""
        return count_tokens(body, self.pieces)

    def observe_turn(self, key: str | None, body: dict[str, Any], upstream: int) -> None:
        """A turn ended (on the event loop): the backend counted `upstream` input tokens for `body`."""
        if not key or upstream <= 0:
            return
        with self.lock:
            if key not in self.asked:
                return
            self.pending[key] = self.worker.submit(lambda: self.observe(key, self.count(body), upstream))

    def observe(self, key: str | None, local: int, upstream: int) -> None:
        """A finished turn: the backend counted `upstream` input tokens for a request counted `local`."""
        if not key or local <= 0 or upstream <= 0:
            return
        ratio = upstream / local
        if not RATIO_BOUNDS[0] <= ratio <= RATIO_BOUNDS[1]:
            return
        with self.lock:
            self.ratios[key] = ratio
            self.ratios.move_to_end(key)
            while len(self.ratios) > self.size:
                self.ratios.popitem(last=False)

    def apply(self, key: str | None, local: int) -> int:
        """`local` scaled by the conversation's ratio; unchanged for a conversation not seen yet."""
        if not key:
            return local
        with self.lock:
            self.asked[key] = None
            self.asked.move_to_end(key)
            while len(self.asked) > self.size:
                self.asked.popitem(last=False)
            pending = self.pending.pop(key, None)
        if pending is not None:
            try:
                pending.result(timeout=60)  # the turn just before this count: its ratio applies
            except Exception:  # a count that failed leaves the conversation uncalibrated, no more
                log.exception("could not count a finished turn for calibration")
        with self.lock:
            ratio = self.ratios.get(key)
        return round(local * ratio) if ratio else local
