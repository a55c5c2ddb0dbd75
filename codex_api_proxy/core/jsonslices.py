"""JSON text of a large document in pieces, so that no single call holds the GIL for long.

json.dumps is one C call: for a 60 MiB prompt it holds the GIL for 150-350 ms on this machine, and
although a large body is encoded in a worker thread, every other client's event loop waits for the
GIL all that time. Here a container is walked in Python and each long string is escaped a slice at a
time, each slice one short C call: between them the interpreter hands the GIL to the event loop
(sys.getswitchinterval, 5 ms). The text is exactly json.dumps's with ensure_ascii=False and the same
separators and sort_keys: hashes of it (cache_health) agree whichever way it was made.

Only for large documents: the walk costs more CPU than the C encoder on small ones.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from .limits import KIB

SLICE = 256 * KIB  # characters escaped per call: about 1 ms


def dumps_pieces(
    value: Any, *, sort_keys: bool = False, separators: tuple[str, str] = (", ", ": ")
) -> list[str]:
    """json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, separators=separators), as a list
    of pieces whose concatenation is that text."""
    item_sep, key_sep = separators

    def dumps(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, sort_keys=sort_keys, separators=separators)

    pieces: list[str] = []
    add = pieces.append

    def walk(v: Any) -> None:
        if isinstance(v, str):
            if len(v) <= SLICE:
                add(dumps(v))
                return
            add('"')
            for start in range(0, len(v), SLICE):  # escaping is per character: slices escape alike
                add(dumps(v[start : start + SLICE])[1:-1])
            add('"')
        elif isinstance(v, dict) and v and all(type(k) is str for k in v):  # other keys: json's rules
            add("{")
            for n, (k, x) in enumerate(sorted(v.items()) if sort_keys else v.items()):
                add(f"{item_sep if n else ''}{dumps(k)}{key_sep}")
                walk(x)
            add("}")
        elif isinstance(v, (list, tuple)) and v:
            add("[")
            for n, x in enumerate(v):
                if n:
                    add(item_sep)
                walk(x)
            add("]")
        else:  # numbers, literals, empty containers: json's own text
            add(dumps(v))

    try:
        walk(value)
    except RecursionError:  # nested deeper than the walk may go: json's C encoder in one call
        return [dumps(value)]
    return pieces


def encode(value: Any, *, separators: tuple[str, str] = (", ", ": ")) -> bytes:
    """dumps_pieces' text as UTF-8 bytes: each piece is let go once encoded, so the whole text and
    its bytes are not held side by side (a large body's peak memory)."""
    pieces = dumps_pieces(value, separators=separators)
    encoded: list[bytes] = []
    for n, piece in enumerate(pieces):
        encoded.append(piece.encode())
        pieces[n] = ""
    return b"".join(encoded)


_ESCAPE_REACH = 12  # bytes: the longest escape, a surrogate pair written as two \uXXXX, fits in this
_CUT_SEARCH = 4 * KIB  # how far back from a slice's end a safe place to cut is looked for


def loads(raw: bytes) -> Any:
    """json.loads(raw) of a large UTF-8 document whose long strings are decoded a slice at a time.

    What holds the GIL in json.loads of a pasted file is the one long string literal. Each stretch of
    SLICE bytes without a quote lies inside such a literal (or the text is not JSON); the literal
    around it is cut out and replaced by a token, the rest parsed at once, the literal decoded in
    slices cut where no escape and no UTF-8 sequence spans the cut, and put back where the token is.
    Whatever does not fit this (no long literal, a token that lands outside a string, an error
    anywhere) is parsed by json.loads itself, which also says what is wrong with it."""
    if json.detect_encoding(raw) != "utf-8":
        return json.loads(raw)
    literals = _long_literals(raw)
    if not literals:
        return json.loads(raw)
    tokens: dict[str, tuple[int, int]] = {}
    parts, last = [], 0
    for start, end in literals:
        token = f"cxp{secrets.token_hex(8)}"
        if contains(raw, token.encode()):  # about never: then the plain way
            return json.loads(raw)
        tokens[token] = (start, end)
        parts += [raw[last:start], token.encode()]
        last = end
    try:
        skeleton = json.loads(b"".join([*parts, raw[last:]]))
        found: dict[str, str] = {}
        for token, (start, end) in tokens.items():
            found[token] = _decode_inner(memoryview(raw)[start:end])
        result = _put_back(skeleton, found)
    except (ValueError, RecursionError, _Misplaced):
        return json.loads(raw)
    return result


def contains(raw: bytes, needle: bytes) -> bool:
    """`needle in raw`, searched SLICE bytes at a time: one search of 60 MiB is one C call that held
    the GIL for 30-100 ms (the byte search skips ahead only as far as the needle is long)."""
    if len(raw) <= SLICE:
        return needle in raw
    reach = SLICE + len(needle) - 1  # windows overlap so that a needle across a boundary is found
    return any(raw.find(needle, start, start + reach) >= 0 for start in range(0, len(raw), SLICE))


class _Misplaced(Exception):
    """A token landed where a long string cannot be (a key, or twice): the document is parsed whole."""


def _long_literals(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of the inside of each string literal that holds a quote-free stretch of SLICE
    bytes: start just after a quote, end at the next unescaped quote."""
    out: list[tuple[int, int]] = []
    offset = 0
    while offset + SLICE <= len(raw):
        if raw.find(b'"', offset, offset + SLICE) >= 0:
            offset += SLICE // 2  # stretches overlapping by half: any quote-free SLICE is found
            continue
        start = raw.rfind(b'"', 0, offset) + 1
        end = raw.find(b'"', offset + SLICE)
        while end > 0 and _escaped(raw, end):
            end = raw.find(b'"', end + 1)
        if start == 0 or end < 0:
            return []  # not inside a string: json.loads will say what it is
        out.append((start, end))
        offset = end + 1
    return out


def _escaped(raw: bytes | memoryview, at: int) -> bool:
    """Whether the byte at `at` follows an odd run of backslashes."""
    run = 0
    while at - run - 1 >= 0 and raw[at - run - 1] == 0x5C:
        run += 1
    return run % 2 == 1


def _decode_inner(inner: memoryview) -> str:
    """The text of a string literal's inside, decoded a slice at a time."""
    pieces, start, size = [], 0, len(inner)
    while start < size:
        cut = _safe_cut(inner, start, min(start + SLICE, size))
        pieces.append(json.loads(b'"' + inner[start:cut].tobytes() + b'"'))
        start = cut
    return "".join(pieces)


def _safe_cut(inner: memoryview, start: int, cut: int) -> int:
    """A place at or after `cut` (or a little before) with no escape, nor surrogate pair of escapes,
    spanning it, and at a UTF-8 sequence's start: the 12 bytes before it hold no backslash. Text
    dense with backslashes is cut further on (one longer slice), or not at all."""
    size = len(inner)
    while cut < size:
        floor, at = max(start + 1, cut - _CUT_SEARCH), cut
        while at > floor:
            reach = bytes(inner[max(at - _ESCAPE_REACH, 0) : at])
            slash = reach.rfind(b"\\")
            if slash >= 0:
                at -= len(reach) - slash
                continue
            while at > floor and 0x80 <= inner[at] < 0xC0:
                at -= 1
            if not 0x80 <= inner[at] < 0xC0:
                return at
            break
        cut += SLICE
    return size


def _put_back(value: Any, found: dict[str, str]) -> Any:
    """The skeleton with each token replaced by its decoded string (a token is a whole string when
    the literal was found from its opening quote, as it is unless an escaped quote came first)."""
    if isinstance(value, str):
        for token, text in found.items():
            if token in value:
                value = text if value == token else value.replace(token, text)
        return value
    if isinstance(value, dict):
        if any(token in key for key in value for token in found):
            raise _Misplaced
        return {key: _put_back(item, found) for key, item in value.items()}
    if isinstance(value, list):
        return [_put_back(item, found) for item in value]
    return value
