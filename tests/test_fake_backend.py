"""The fake Codex backend over real HTTP: what every other test relies on it to do."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codex_api_proxy.core.sse import SSEParser, parse_all
from codex_api_proxy.testing.fake_backend import (
    DEFAULT_TEXT,
    FakeBackend,
    Turn,
    custom_tool_call,
    function_call,
    reasoning,
    text,
)

HEADERS = {"authorization": "Bearer access-1", "chatgpt-account-id": "acct-1"}
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}


@pytest.fixture
def fb() -> Iterator[FakeBackend]:
    with FakeBackend(
        access_tokens={"access-1"}, account_id="acct-1", refresh_tokens={"refresh-1"}
    ) as backend:
        yield backend


def body(**over: Any) -> dict[str, Any]:
    base = {
        "model": "gpt-5.5",
        "instructions": "Be brief.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "stream": True,
        "store": False,
    }
    return {k: v for k, v in {**base, **over}.items() if v is not ...}


def post(fb: FakeBackend, payload: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    payload = body() if payload is None else payload
    headers = HEADERS if headers is None else headers
    # verify=False: plain http anyway, and it skips loading the CA bundle (~60 ms per call)
    return httpx.post(f"{fb.url}/responses", json=payload, headers=headers, verify=False)


def events(resp: httpx.Response) -> list[dict[str, Any]]:
    parsed = parse_all(resp.content)
    assert all(e.event == e.json()["type"] for e in parsed)  # `event:` line names the JSON type
    return [e.json() for e in parsed]


def types(evs: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in evs]


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# ---- the stream ----------------------------------------------------------------------------------------


def test_default_turn_is_the_backend_event_sequence_with_empty_completed_output(fb: FakeBackend) -> None:
    resp = post(fb, body(model="gpt-5.4"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    evs = events(resp)
    assert types(evs) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    created, completed = evs[0]["response"], evs[-1]["response"]
    assert created["id"].startswith("resp_") and created["id"] == evs[1]["response"]["id"] == completed["id"]
    assert created["model"] == completed["model"] == "gpt-5.4"
    assert completed["status"] == "completed" and completed["output"] == []
    assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta") == DEFAULT_TEXT
    done = evs[-2]["item"]
    assert done["id"].startswith("msg_") and done["status"] == "completed"
    assert done["content"] == [{"type": "output_text", "text": DEFAULT_TEXT, "annotations": []}]
    usage = completed["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_every_item_kind_streams_with_its_own_events_and_ids(fb: FakeBackend) -> None:
    fb.enqueue(
        Turn(
            output=[
                reasoning(["first thought", "second thought"]),
                text("hi there", chunks=3),
                function_call("exec_command", {"cmd": "echo hello"}, call_id="call_1"),
                custom_tool_call("apply_patch", "*** Begin Patch\n*** End Patch"),
            ]
        )
    )
    evs = events(post(fb))
    by_index: dict[int, list[dict[str, Any]]] = {}
    for e in evs:
        if "output_index" in e:
            by_index.setdefault(e["output_index"], []).append(e)
    assert sorted(by_index) == [0, 1, 2, 3]
    for index, item_events in by_index.items():  # each item is contiguous: added first, done last
        assert item_events[0]["type"] == "response.output_item.added"
        assert item_events[-1]["type"] == "response.output_item.done"
        assert item_events[0]["item"]["id"] == item_events[-1]["item"]["id"]
        assert all(
            e.get("item_id", item_events[0]["item"]["id"]) == item_events[0]["item"]["id"]
            for e in item_events
        )
        assert index == 0 or by_index[index - 1][-1]["sequence_number"] < item_events[0]["sequence_number"]

    rs = by_index[0]
    assert rs[-1]["item"]["id"].startswith("rs_")
    assert rs[-1]["item"]["summary"] == [
        {"type": "summary_text", "text": "first thought"},
        {"type": "summary_text", "text": "second thought"},
    ]
    assert rs[-1]["item"]["encrypted_content"].startswith("enc_")
    assert [e["summary_index"] for e in rs if e["type"] == "response.reasoning_summary_part.added"] == [0, 1]
    deltas = [e["delta"] for e in rs if e["type"] == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == "first thoughtsecond thought"

    assert [e["delta"] for e in by_index[1] if e["type"] == "response.output_text.delta"] == [
        "hi",
        " th",
        "ere",
    ]

    fc = by_index[2]
    assert fc[-1]["item"] == {
        "type": "function_call",
        "id": fc[0]["item"]["id"],
        "call_id": "call_1",
        "name": "exec_command",
        "arguments": '{"cmd":"echo hello"}',
        "status": "completed",
    }
    assert fc[0]["item"]["id"].startswith("fc_") and fc[0]["item"]["arguments"] == ""
    args = [e["delta"] for e in fc if e["type"] == "response.function_call_arguments.delta"]
    assert len(args) == 2 and "".join(args) == '{"cmd":"echo hello"}'
    assert fc[-2]["type"] == "response.function_call_arguments.done"
    assert fc[-2]["arguments"] == '{"cmd":"echo hello"}'

    ctc = by_index[3]
    assert ctc[-1]["item"]["type"] == "custom_tool_call" and ctc[-1]["item"]["id"].startswith("ctc_")
    assert ctc[-1]["item"]["call_id"].startswith("call_")
    assert ctc[-1]["item"]["input"] == "*** Begin Patch\n*** End Patch"
    pieces = [e["delta"] for e in ctc if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(pieces) == "*** Begin Patch\n*** End Patch"
    assert evs[-1]["response"]["output"] == []
    assert evs[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


def test_usage_is_taken_verbatim_and_default_input_tokens_grow_with_the_request(fb: FakeBackend) -> None:
    usage = {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 5},
        "output_tokens": 1,
        "total_tokens": 8,
    }
    fb.enqueue(Turn(usage=usage))
    assert events(post(fb))[-1]["response"]["usage"] == usage
    small = events(post(fb))[-1]["response"]["usage"]["input_tokens"]
    long_input = [{"role": "user", "content": "word " * 2000}]
    large = events(post(fb, body(input=long_input)))[-1]["response"]["usage"]["input_tokens"]
    assert large > small + 2000


def test_first_event_arrives_long_before_a_slow_stream_ends(fb: FakeBackend) -> None:
    fb.enqueue(Turn(output=[text("one two three four five six", chunks=6)], delay=0.1))  # 14 events
    parser = SSEParser()
    start = time.monotonic()
    arrivals: list[float] = []
    with httpx.stream("POST", f"{fb.url}/responses", json=body(), headers=HEADERS) as resp:
        for chunk in resp.iter_raw():
            arrivals += [time.monotonic() - start for _ in parser.feed(chunk)]
    assert len(arrivals) == 14
    assert arrivals[0] < 0.5
    assert arrivals[-1] > 1.2
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert gaps[len(gaps) // 2] > 0.07  # events arrive one by one, as written


def test_stall_is_silence_after_response_created(fb: FakeBackend) -> None:
    fb.enqueue(Turn(stall=1.0))
    parser = SSEParser()
    start = time.monotonic()
    seen: list[tuple[str, float]] = []
    with httpx.stream("POST", f"{fb.url}/responses", json=body(), headers=HEADERS) as resp:
        for chunk in resp.iter_raw():
            seen += [(e.json()["type"], time.monotonic() - start) for e in parser.feed(chunk)]
    assert seen[0][0] == "response.created" and seen[0][1] < 0.7
    assert seen[1][0] == "response.in_progress" and seen[1][1] - seen[0][1] >= 0.95


def test_delay_headers_holds_back_the_status_line(fb: FakeBackend) -> None:
    fb.enqueue(Turn(delay_headers=0.8), Turn(delay_headers=0.8))
    with pytest.raises(httpx.ReadTimeout):
        post_timeout = httpx.Timeout(5.0, read=0.3)
        httpx.post(f"{fb.url}/responses", json=body(), headers=HEADERS, timeout=post_timeout)
    start = time.monotonic()
    resp = post(fb)
    assert resp.status_code == 200 and time.monotonic() - start >= 0.75


def test_cut_after_drops_the_connection_mid_stream(fb: FakeBackend) -> None:
    fb.enqueue(Turn(cut_after=4))
    parser = SSEParser()
    got: list[dict[str, Any]] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{fb.url}/responses", json=body(), headers=HEADERS) as resp,
    ):
        for chunk in resp.iter_raw():
            got += [e.json() for e in parser.feed(chunk)]
    assert len(got) == 4 and not TERMINAL & set(types(got))


def test_cut_clean_ends_the_body_without_a_terminal_event(fb: FakeBackend) -> None:
    fb.enqueue(Turn(cut_after=3, cut_clean=True))
    evs = events(post(fb))
    assert types(evs) == ["response.created", "response.in_progress", "response.output_item.added"]


def test_failed_incomplete_and_error_event_endings(fb: FakeBackend) -> None:
    fb.enqueue(
        Turn(output=[text("partial")], fail={"code": "server_error", "message": "boom"}),
        Turn(incomplete="max_output_tokens"),
        Turn(output=[], error_event={"type": "server_error", "code": "server_error", "message": "oops"}),
        Turn.rate_limited(2),
        Turn.context_length_exceeded(),
    )
    failed = events(post(fb))
    assert failed[-1]["type"] == "response.failed" and "response.output_item.done" in types(failed)
    assert failed[-1]["response"]["status"] == "failed"
    assert failed[-1]["response"]["error"] == {"code": "server_error", "message": "boom"}

    incomplete = events(post(fb))[-1]
    assert incomplete["type"] == "response.incomplete"
    assert incomplete["response"]["status"] == "incomplete"
    assert incomplete["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert incomplete["response"]["usage"]["output_tokens"] > 0

    errored = events(post(fb))
    assert types(errored) == ["response.created", "response.in_progress", "error"]
    assert errored[-1]["error"] == {"type": "server_error", "code": "server_error", "message": "oops"}

    limited = events(post(fb))[-1]["response"]["error"]
    assert limited["code"] == "rate_limit_exceeded" and "try again in 2s" in limited["message"]
    assert events(post(fb))[-1]["response"]["error"]["code"] == "context_length_exceeded"


def test_http_error_turns_answer_with_their_status_body_and_headers(fb: FakeBackend) -> None:
    fb.enqueue(
        Turn.usage_limit(resets_in_seconds=90), Turn.http_error(503, headers={"retry-after": "3"}), Turn()
    )
    limited = post(fb)
    assert limited.status_code == 429
    error = limited.json()["error"]
    resets_at = error.pop("resets_at")
    assert error == {
        "type": "usage_limit_reached",
        "message": "The usage limit has been reached",
        "plan_type": "plus",
        "resets_in_seconds": 90,
    }
    assert isinstance(resets_at, int) and 0 < resets_at - time.time() <= 90
    assert limited.headers["x-codex-primary-used-percent"] == "100.0"
    unavailable = post(fb)
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "3"
    assert unavailable.json() == {"detail": "Service Unavailable"}
    assert post(fb).status_code == 200
    fb.enqueue(Turn(status=529))
    overloaded = post(fb)
    assert overloaded.status_code == 529 and overloaded.json() == {"detail": "Overloaded"}
    assert [r.status for r in fb.responses_requests] == [429, 503, 200, 529]


def test_stream_turn_headers_are_sent(fb: FakeBackend) -> None:
    fb.enqueue(Turn(headers={"x-codex-primary-used-percent": "42"}))
    assert post(fb).headers["x-codex-primary-used-percent"] == "42"


def test_script_is_fifo_rejections_do_not_consume_it_and_the_default_follows(fb: FakeBackend) -> None:
    fb.enqueue(Turn(output=[text("first")]), Turn(output=[text("second")]))
    assert post(fb, body(store=True)).status_code == 400
    assert post(fb, headers={"authorization": "Bearer nope"}).status_code == 401
    assert fb.pending() == 2
    said = []
    for _ in range(3):
        evs = events(post(fb))
        said.append(next(e["text"] for e in evs if e["type"] == "response.output_text.done"))
    assert said == ["first", "second", DEFAULT_TEXT]
    assert fb.pending() == 0


# ---- request rules -------------------------------------------------------------------------------------


def test_bad_or_missing_bearer_is_token_expired(fb: FakeBackend) -> None:
    for auth in ({"authorization": "Bearer wrong"}, {}, {"authorization": "Basic access-1"}):
        resp = post(fb, headers={**auth, "chatgpt-account-id": "acct-1"})
        assert resp.status_code == 401
        assert resp.json() == {
            "error": {
                "message": "Your authentication token has expired. Please try signing in again.",
                "type": "invalid_request_error",
                "code": "token_expired",
            }
        }


def test_account_header_must_match(fb: FakeBackend) -> None:
    assert post(fb, headers={"authorization": "Bearer access-1"}).status_code == 403
    resp = post(fb, headers={"authorization": "Bearer access-1", "chatgpt-account-id": "acct-2"})
    assert resp.status_code == 403 and "chatgpt-account-id" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("over", "detail"),
    [
        ({"stream": False}, "Stream must be set to true"),
        ({"stream": ...}, "Stream must be set to true"),
        ({"store": True}, "Store must be set to false"),
        ({"store": ...}, "Store must be set to false"),
        ({"max_output_tokens": 10}, "Unsupported parameter: max_output_tokens"),
        ({"max_tokens": 10}, "Unsupported parameter: max_tokens"),
        ({"max_completion_tokens": 10}, "Unsupported parameter: max_completion_tokens"),
        ({"temperature": 0.2}, "Unsupported parameter: temperature"),
        ({"top_p": 0.9}, "Unsupported parameter: top_p"),
        ({"metadata": {"a": "b"}}, "Unsupported parameter: metadata"),
        ({"truncation": "auto"}, "Unsupported parameter: truncation"),
        ({"user": "u"}, "Unsupported parameter: user"),
        ({"stream_options": {"include_usage": True}}, "Unsupported parameter: stream_options"),
        ({"model": ...}, "Missing required parameter: model"),
        ({"instructions": ""}, "Instructions are not valid"),
        ({"instructions": None}, "Instructions are not valid"),
        ({"input": "hello"}, "Input must be a list"),
        ({"input": [{"role": "system", "content": "x"}]}, "System messages are not allowed"),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_9", "output": "x"}]},
            "No tool call found for function call output with call_id call_9.",
        ),
        (
            {"input": [{"type": "custom_tool_call_output", "call_id": "call_8", "output": "x"}]},
            "No tool call found for custom tool call output with call_id call_8.",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/y.png"}]}]},
            "Invalid input_image at input[0].content[0]: needs image_url (data: or https URL) or file_id",
        ),
    ],
)
def test_validation_rejects_with_a_detail(fb: FakeBackend, over: dict[str, Any], detail: str) -> None:
    resp = post(fb, body(**over))
    assert resp.status_code == 400
    assert resp.json() == {"detail": detail}


def test_instructions_may_be_absent_and_image_parts_may_use_data_https_or_file_id(fb: FakeBackend) -> None:
    images = [
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
        {"type": "input_image", "image_url": "https://example.com/cat.png"},
        {"type": "input_image", "file_id": "file_1"},
    ]
    resp = post(fb, body(instructions=..., input=[{"role": "user", "content": images}]))
    assert resp.status_code == 200


@pytest.mark.parametrize(
    "item",
    [
        {"type": "message", "id": "msg_1", "role": "user", "content": [{"type": "input_text", "text": "x"}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "reasoning", "id": "rs_1", "summary": []},  # an id without encrypted_content
    ],
)
def test_items_with_ids_are_not_found_when_store_is_false(fb: FakeBackend, item: dict[str, Any]) -> None:
    resp = post(fb, body(input=[item]))
    assert resp.status_code == 400
    assert resp.json() == {
        "error": {
            "message": f"Item with id '{item['id']}' not found. Items are not persisted when `store` is set to "
            "false. Try again with `store` set to true, or remove this item from your input.",
            "type": "invalid_request_error",
            "param": "input",
            "code": None,
        }
    }


def test_function_call_output_id_is_rejected_too(fb: FakeBackend) -> None:
    items = [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "id": "fco_1", "call_id": "c1", "output": "ok"},
    ]
    resp = post(fb, body(input=items))
    assert resp.status_code == 400 and "Item with id 'fco_1' not found" in resp.json()["error"]["message"]


def test_assistant_history_must_use_output_text(fb: FakeBackend) -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "input_text", "text": "hello"}]},
    ]
    resp = post(fb, body(input=items))
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["message"] == "Invalid value: 'input_text'. Supported values are: 'output_text' and 'refusal'."
    assert err["param"] == "input[1].content[0]"
    items[1]["content"] = [{"type": "output_text", "text": "hello"}]
    assert post(fb, body(input=items)).status_code == 200


def test_function_tools_need_a_top_level_name(fb: FakeBackend) -> None:
    chat_style = {"type": "function", "function": {"name": "f", "parameters": {}}}
    resp = post(fb, body(tools=[chat_style]))
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "Missing required parameter: 'tools[0].name'."
    responses_style = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    assert post(fb, body(tools=[responses_style, {"type": "web_search"}])).status_code == 200


def test_tool_round_trip_and_reasoning_replay_are_accepted(fb: FakeBackend) -> None:
    fb.enqueue(
        Turn(output=[reasoning("plan"), function_call("exec_command", {"cmd": "ls"}, call_id="call_7")])
    )
    done = [e["item"] for e in events(post(fb)) if e["type"] == "response.output_item.done"]
    rs, fc = done
    history = [
        *body()["input"],
        {"type": "reasoning", "id": rs["id"], "summary": rs["summary"], "content": None,
         "encrypted_content": rs["encrypted_content"]},
        {"type": "function_call", "call_id": "call_7", "name": fc["name"], "arguments": fc["arguments"]},
        {"type": "function_call_output", "call_id": "call_7", "output": "file.txt"},
    ]  # fmt: skip
    assert post(fb, body(input=history)).status_code == 200
    assert fb.accepted_encrypted_content == [rs["encrypted_content"]]


def test_reasoning_with_unknown_encrypted_content_is_rejected(fb: FakeBackend) -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAforged"}
    resp = post(fb, body(input=[item]))
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "The encrypted content could not be verified."
    assert fb.accepted_encrypted_content == []


def test_explicit_encrypted_content_is_remembered(fb: FakeBackend) -> None:
    fb.enqueue(Turn(output=[reasoning("x", encrypted_content="enc_chosen"), text("ok")]))
    done = [e["item"] for e in events(post(fb)) if e["type"] == "response.output_item.done"]
    assert done[0]["encrypted_content"] == "enc_chosen"
    item = {"type": "reasoning", "summary": [], "encrypted_content": "enc_chosen"}
    assert post(fb, body(input=[item, *body()["input"]])).status_code == 200


def test_encrypted_content_can_require_include_like_the_real_backend(fb: FakeBackend) -> None:
    fb.encrypted_content_needs_include = True
    fb.enqueue(Turn(output=[reasoning("a")]), Turn(output=[reasoning("b")]))
    without = next(e for e in events(post(fb)) if e["type"] == "response.output_item.done")["item"]
    assert without["encrypted_content"] is None
    with_include = events(post(fb, body(include=["reasoning.encrypted_content"])))
    included = next(e for e in with_include if e["type"] == "response.output_item.done")["item"]
    assert included["encrypted_content"].startswith("enc_")


# ---- models, tokens, plumbing --------------------------------------------------------------------------


def test_models_catalog_needs_a_bearer_and_records_client_version(fb: FakeBackend) -> None:
    assert httpx.get(f"{fb.url}/models").status_code == 401
    resp = httpx.get(f"{fb.url}/models", params={"client_version": "1.0.0"}, headers=HEADERS)
    assert resp.status_code == 200
    models = resp.json()["models"]
    gpt55 = next(m for m in models if m["slug"] == "gpt-5.5")
    assert gpt55["visibility"] == "list" and gpt55["supported_in_api"] is True and gpt55["priority"] == 1
    assert gpt55["default_reasoning_level"] == "medium" and gpt55["context_window"] == 272000
    assert {"effort": "low", "description": "Low reasoning effort"} in gpt55["supported_reasoning_levels"]
    assert any(m["visibility"] == "hide" for m in models)
    assert fb.requests[-1].query == {"client_version": "1.0.0"}


def refresh(fb: FakeBackend, token: str, **extra: Any) -> httpx.Response:
    payload = {"client_id": "app_x", "grant_type": "refresh_token", "refresh_token": token, "scope": "openid"}
    return httpx.post(fb.token_url, json={**payload, **extra})


def test_refresh_rotates_once_and_detects_reuse(fb: FakeBackend) -> None:
    first = refresh(fb, "refresh-1")
    assert first.status_code == 200
    grant = first.json()
    assert set(grant) == {"access_token", "refresh_token", "id_token"}
    assert grant["refresh_token"] != "refresh-1"
    claims = jwt_claims(grant["id_token"])
    assert claims["https://api.openai.com/auth"]["chatgpt_account_id"] == "acct-1"
    assert claims["exp"] > time.time()
    assert jwt_claims(grant["access_token"])["exp"] > time.time() + 600

    auth = {"authorization": f"Bearer {grant['access_token']}", "chatgpt-account-id": "acct-1"}
    assert post(fb, headers=auth).status_code == 200  # the new access token works

    reused = refresh(fb, "refresh-1")
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "refresh_token_reused"
    unknown = refresh(fb, "refresh-unknown")
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "refresh_token_invalidated"
    assert refresh(fb, grant["refresh_token"]).status_code == 200  # the rotated one works once

    assert fb.refresh_token_uses == {"refresh-1": 2, "refresh-unknown": 1, grant["refresh_token"]: 1}
    assert [r.body["refresh_token"] for r in fb.refresh_requests] == [
        "refresh-1",
        "refresh-1",
        "refresh-unknown",
        grant["refresh_token"],
    ]
    assert len(fb.token_grants) == 2


def test_refresh_accepts_form_encoding_and_rejects_other_grants(fb: FakeBackend) -> None:
    form = {"client_id": "app_x", "grant_type": "refresh_token", "refresh_token": "refresh-1"}
    assert httpx.post(fb.token_url, data=form).status_code == 200
    assert refresh(fb, "x", grant_type="authorization_code").status_code == 400


def test_token_endpoint_failure_and_delay_knobs(fb: FakeBackend) -> None:
    fb.token_status = 500
    failing = refresh(fb, "refresh-1")
    assert failing.status_code == 500
    fb.token_status = None
    fb.token_delay = 0.5
    start = time.monotonic()
    assert refresh(fb, "refresh-1").status_code == 200  # a failed attempt does not burn the token
    assert time.monotonic() - start >= 0.45


def test_concurrent_refreshes_of_one_token_have_one_winner(fb: FakeBackend) -> None:
    fb.token_delay = 0.3

    async def race() -> list[int]:
        async with httpx.AsyncClient() as client:
            payload = {"client_id": "c", "grant_type": "refresh_token", "refresh_token": "refresh-1"}
            answers = await asyncio.gather(*(client.post(fb.token_url, json=payload) for _ in range(3)))
        return sorted(r.status_code for r in answers)

    assert asyncio.run(race()) == [200, 401, 401]


def test_minted_access_tokens_expire(fb: FakeBackend) -> None:
    fresh = fb.mint_access_token(600)
    assert jwt_claims(fresh)["exp"] == pytest.approx(time.time() + 600, abs=5)
    assert (
        post(fb, headers={"authorization": f"Bearer {fresh}", "chatgpt-account-id": "acct-1"}).status_code
        == 200
    )
    stale = fb.mint_access_token(-1)
    assert (
        post(fb, headers={"authorization": f"Bearer {stale}", "chatgpt-account-id": "acct-1"}).status_code
        == 401
    )


def test_without_token_sets_any_bearer_is_accepted() -> None:
    with FakeBackend() as open_fb:
        assert post(open_fb, headers={"authorization": "Bearer whatever"}).status_code == 200
        assert post(open_fb, headers={}).status_code == 401
        assert refresh(open_fb, "any").status_code == 200
        assert refresh(open_fb, "any").json()["error"]["code"] == "refresh_token_reused"


def test_requests_are_recorded_with_lower_case_headers_and_answer_status(fb: FakeBackend) -> None:
    httpx.post(f"{fb.url}/responses?x=1", json=body(), headers={"Authorization": "Bearer access-1",
                                                                 "ChatGPT-Account-ID": "acct-1"})  # fmt: skip
    rec = fb.requests[-1]
    assert (rec.method, rec.path, rec.query, rec.status) == (
        "POST",
        "/backend-api/codex/responses",
        {"x": "1"},
        200,
    )
    assert rec.headers["chatgpt-account-id"] == "acct-1" and rec.headers["authorization"] == "Bearer access-1"
    assert rec.body == body() and json.loads(rec.raw) == body()
    assert fb.responses_requests == [rec]


def test_unknown_paths_are_json_404(fb: FakeBackend) -> None:
    resp = httpx.get(f"{fb.base_url}/v1/chat/completions", headers=HEADERS)
    assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}


def test_sequential_requests_reuse_one_connection(fb: FakeBackend) -> None:
    with httpx.Client(headers=HEADERS) as client:
        for _ in range(3):
            assert client.post(f"{fb.url}/responses", json=body()).status_code == 200
            assert client.post(f"{fb.url}/responses", json=body(store=True)).status_code == 400
        assert client.get(f"{fb.url}/models").status_code == 200
    assert fb.connections_opened == 1


async def test_concurrent_streams_are_served_in_parallel(fb: FakeBackend) -> None:
    n = 5
    fb.enqueue(*(Turn(output=[text(f"answer {i}", chunks=4)], delay=0.1) for i in range(n)))  # ~1.1 s each
    async with httpx.AsyncClient(headers=HEADERS, timeout=10) as client:
        start = time.monotonic()
        answers = await asyncio.gather(*(client.post(f"{fb.url}/responses", json=body()) for _ in range(n)))
        elapsed = time.monotonic() - start
    texts = sorted(
        next(e["text"] for e in events(r) if e["type"] == "response.output_text.done") for r in answers
    )
    assert texts == [f"answer {i}" for i in range(n)]
    assert elapsed < 3.0  # serially it would take ~5.5 s


def test_stop_closes_the_port() -> None:
    fb = FakeBackend().start()
    url = fb.url
    assert httpx.get(f"{url}/models", headers={"authorization": "Bearer x"}).status_code == 200
    fb.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", headers={"authorization": "Bearer x"})


def test_cli_script_prints_its_url_and_serves() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "fake_upstream.py"
    command = [sys.executable, str(script), "--port", "0", "--token", "tok"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:") and url.endswith("/backend-api/codex")
            resp = httpx.post(f"{url}/responses", json=body(), headers={"authorization": "Bearer tok"})
            assert resp.status_code == 200 and events(resp)[-1]["type"] == "response.completed"
        finally:
            proc.terminate()
        assert proc.wait(10) == 0  # SIGTERM is a clean stop


# ---- the OpenAI API fake (API-key mode) ----------------------------------------------------------------

API_KEY = {"authorization": "Bearer sk-test-0123456789abcdef"}
CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def api() -> Iterator[FakeBackend]:
    with FakeBackend(api_keys={"sk-test-0123456789abcdef"}) as backend:
        yield backend


def api_post(
    fb: FakeBackend, path: str, payload: dict[str, Any], headers: dict[str, str] = API_KEY
) -> httpx.Response:
    return httpx.post(f"{fb.openai_url}{path}", json=payload, headers=headers, verify=False)


def chat_chunks(resp: httpx.Response) -> list[Any]:
    parsed = parse_all(resp.content)
    assert all(e.event is None for e in parsed)  # chat streams have no `event:` lines
    return [e.data if e.data == "[DONE]" else e.json() for e in parsed]


def test_api_chat_stream_has_role_content_tool_call_deltas_finish_usage_and_done(api: FakeBackend) -> None:
    api.enqueue(Turn(output=[reasoning("hidden"), text("Let me check.", chunks=2),
                             function_call("get_weather", {"city": "Paris"}, call_id="call_1")],
                     usage={"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}))  # fmt: skip
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.1, "n": 1}
    chunks = chat_chunks(api_post(api, "/chat/completions", payload))
    assert chunks[-1] == "[DONE]"
    body = chunks[:-1]
    assert {c["object"] for c in body} == {"chat.completion.chunk"} and len({c["id"] for c in body}) == 1
    deltas = [c["choices"][0]["delta"] for c in body if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    assert all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert [c["choices"][0]["finish_reason"] for c in body if c["choices"]][-1] == "tool_calls"
    assert body[-1]["choices"] == [] and body[-1]["usage"]["prompt_tokens"] == 9
    assert body[-1]["usage"]["completion_tokens"] == 4 and body[-1]["usage"]["total_tokens"] == 13


def test_api_chat_non_streaming_is_a_chat_completion(api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("Bonjour.")]), Turn(output=[function_call("f", "{}", call_id="c1")]))
    done = api_post(api, "/chat/completions", {**CHAT, "max_tokens": 5, "temperature": 0.3}).json()
    assert done["object"] == "chat.completion" and done["model"] == "gpt-5.5"
    assert done["choices"][0]["message"]["content"] == "Bonjour."
    assert done["choices"][0]["finish_reason"] == "stop"
    assert done["usage"]["prompt_tokens"] > 0 and done["usage"]["completion_tokens"] > 0
    call = api_post(api, "/chat/completions", CHAT).json()["choices"][0]
    assert call["finish_reason"] == "tool_calls" and call["message"]["content"] is None
    assert call["message"]["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert api.openai_requests[0].body["temperature"] == 0.3


def test_api_responses_accepts_api_parameters_and_completes_with_the_full_output(api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("streamed")]), Turn(output=[reasoning("x"), text("whole")]))
    payload = {"model": "gpt-5.5", "input": "hi", "max_output_tokens": 50, "temperature": 0.2, "store": True,
               "metadata": {"a": "b"}, "stream": True}  # fmt: skip
    evs = events(api_post(api, "/responses", payload))
    done_items = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
    assert evs[-1]["type"] == "response.completed" and evs[-1]["response"]["output"] == done_items
    assert done_items[0]["content"][0]["text"] == "streamed"
    whole = api_post(api, "/responses", {**payload, "stream": False}).json()
    assert whole["object"] == "response" and whole["status"] == "completed"
    assert [i["type"] for i in whole["output"]] == ["reasoning", "message"]
    assert whole["output"][1]["content"][0]["text"] == "whole" and whole["usage"]["output_tokens"] > 0


def test_api_failures_are_error_chunks_in_streams_and_http_errors_otherwise(api: FakeBackend) -> None:
    fail = {"code": "server_error", "message": "melted"}
    api.enqueue(Turn(output=[text("partial")], fail=fail), Turn(fail=fail), Turn.rate_limited(2),
                Turn(status=503), Turn(cut_after=1))  # fmt: skip
    chunks = chat_chunks(api_post(api, "/chat/completions", {**CHAT, "stream": True}))
    assert chunks[-1] == {"error": {"message": "melted", "type": "server_error", "param": None,
                                    "code": "server_error"}}  # fmt: skip
    assert "[DONE]" not in chunks
    failed = api_post(api, "/responses", {"model": "gpt-5.5", "input": "hi"})
    assert failed.status_code == 500 and failed.json()["error"]["message"] == "melted"
    limited = api_post(api, "/chat/completions", CHAT)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
    unavailable = api_post(api, "/chat/completions", CHAT)
    assert unavailable.status_code == 503 and unavailable.json()["error"]["type"] == "server_error"
    with pytest.raises(httpx.RemoteProtocolError):
        api_post(api, "/chat/completions", CHAT)


def test_api_key_is_checked_and_a_rejection_keeps_the_script(api: FakeBackend) -> None:
    api.enqueue(Turn(output=[text("kept")]))
    wrong = api_post(api, "/chat/completions", CHAT, {"authorization": "Bearer sk-wrong-0123456789"})
    assert wrong.status_code == 401
    error = wrong.json()["error"]
    assert error["message"].startswith("Incorrect API key provided: sk-")
    assert "sk-wrong-0123456789" not in error["message"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        None,
        "invalid_api_key",
    )
    assert httpx.get(f"{api.openai_url}/models").status_code == 401
    assert api_post(api, "/responses", {"input": "no model"}).status_code == 400
    assert api_post(api, "/chat/completions", {"model": "gpt-5.5"}).json()["error"]["param"] == "messages"
    assert api.pending() == 1
    assert api_post(api, "/chat/completions", CHAT).json()["choices"][0]["message"]["content"] == "kept"
    with FakeBackend() as open_fb:  # api_keys None: any bearer
        assert api_post(open_fb, "/chat/completions", CHAT, {"authorization": "Bearer x"}).status_code == 200


def test_api_models_is_the_list_shape(api: FakeBackend) -> None:
    resp = httpx.get(f"{api.openai_url}/models", headers=API_KEY)
    assert resp.status_code == 200
    listing = resp.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == [m["slug"] for m in api.models]
    assert set(listing["data"][0]) == {"id", "object", "created", "owned_by"}
    assert listing["data"][0]["object"] == "model"
