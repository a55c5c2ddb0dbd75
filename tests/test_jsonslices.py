"""core/jsonslices.py makes exactly json's text and values, a slice at a time: checked against json
itself on generated documents, with slices small enough that every long-string path is taken."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_api_proxy.core import jsonslices

# characters that need escaping, multi-byte UTF-8, an astral one and lone surrogates among plain ones
TEXT = st.text(alphabet=st.sampled_from('ab x"\\\n\t\x00\x1f\u2028é😀\ud800\udc00/'), max_size=60)
SCALARS = st.one_of(TEXT, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
# raw JSON escapes put into the text of a document, so that slices are cut near them
ESCAPES = st.sampled_from([b"\\u00e9", b"\\ud83d\\ude00", b"\\\\", b'\\"', b"\\/", b"\\ud800", b"\\n"])


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonslices, "SLICE", 8)
    monkeypatch.setattr(jsonslices, "_CUT_SEARCH", 6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DOCUMENTS, st.booleans(), st.sampled_from([(", ", ": "), (",", ":")]))
def test_pieces_are_json_dumps_text(value: Any, sort_keys: bool, separators: tuple[str, str]) -> None:
    pieces = jsonslices.dumps_pieces(value, sort_keys=sort_keys, separators=separators)
    assert "".join(pieces) == json.dumps(
        value, ensure_ascii=False, sort_keys=sort_keys, separators=separators
    )


def _outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "value", json.dumps(parse(raw))  # NaN-free documents: equal text, equal value
    except ValueError as error:
        return "error", type(error)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(DOCUMENTS, st.booleans(), ESCAPES, st.integers(min_value=0, max_value=400), st.binary(max_size=1))
def test_loads_is_json_loads(value: Any, ascii_only: bool, escape: bytes, at: int, damage: bytes) -> None:
    raw = json.dumps({"input": [value, "x" * 30, {"text": "y" * 30}]}, ensure_ascii=ascii_only).encode(
        "utf-8", "surrogatepass"
    )
    raw = raw.replace(b"x", escape, 3)
    if damage:  # a byte overwritten: the same value or the same kind of error as json's
        at %= len(raw)
        raw = raw[:at] + damage + raw[at + 1 :]
    assert _outcome(jsonslices.loads, raw) == _outcome(json.loads, raw)


def test_long_strings_are_found_and_what_is_not_a_string_is_left_to_json() -> None:
    raw = b'{"a": "' + b"p" * 40 + b'", "b": ["' + b'q\\\\\\"' * 10 + b'"]}'
    assert jsonslices._long_literals(raw)
    assert jsonslices.loads(raw) == json.loads(raw)
    for odd in (b'["a"' + b" " * 40 + b', "b"]', b"[" + b"1" * 40 + b"]", b'{"' + b"k" * 40 + b'": 1}'):
        assert _outcome(jsonslices.loads, odd) == _outcome(json.loads, odd)


def test_encode_is_json_dumps_bytes() -> None:
    value = {"input": [{"text": "é😀\n" * 20}], "n": 1}
    assert (
        jsonslices.encode(value, separators=(",", ":"))
        == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    )


# bytes made of a needle's own bytes, so that needles sit on every window boundary (SLICE is 8 here)
NEEDLE_BYTES = st.lists(st.sampled_from([b"a", b"\\", b"u", b"d"]), max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(NEEDLE_BYTES, st.sampled_from([b"\\ud", b"a", b"dddd", b"\\u\\u"]))
def test_contains_is_in(raw: bytes, needle: bytes) -> None:
    assert jsonslices.contains(raw, needle) == (needle in raw)
