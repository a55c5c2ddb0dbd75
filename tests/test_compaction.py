"""Remote compaction through the real proxy, in both of Codex's forms: v2 (an id-less `compaction_trigger`
input item on a normal /responses request, answered by exactly one `compaction` output item) and v1
(`POST /v1/responses/compact`, forwarded to the backend's `/responses/compact`)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.core.sse import parse_all
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, text

from .clients import CODEX, CODEX_NEW, run_codex
from .conftest import ACCESS_TOKEN, Proxy

HISTORY = [
    {"type": "message", "id": "msg_dev", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
    {"type": "message", "id": "msg_u1", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
    {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "a.txt\nb.txt\n"},
    {"type": "message", "id": "msg_a1", "role": "assistant", "content": [{"type": "output_text", "text": "Two files."}]},
]  # fmt: skip
BIG_USAGE = {"input_tokens": 50_000, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 100,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 50_100}  # fmt: skip


def compact_requests(fake: FakeBackend) -> list:
    return [r for r in fake.requests if r.path.endswith("/responses/compact")]


def test_v2_trigger_gets_exactly_one_compaction_item_kept_in_completed_output(
    http: httpx.Client, fake: FakeBackend
) -> None:
    body = {"model": "gpt-5.5", "stream": True, "store": False,
            "input": [*HISTORY, {"type": "compaction_trigger"}]}  # fmt: skip
    r = http.post("/v1/responses", json=body, headers={"x-codex-beta-features": "remote_compaction_v2"})
    assert r.status_code == 200, r.text
    events = [json.loads(e.data) for e in parse_all(r.content) if e.data.startswith("{")]
    completed = events[-1]
    assert completed["type"] == "response.completed"
    output = completed["response"]["output"]  # rebuilt: the backend's own list is empty
    assert [i["type"] for i in output] == ["compaction"]
    assert output[0]["encrypted_content"] in fake.issued_compactions
    sent = fake.responses_requests[-1]
    assert sent.body["input"][-1] == {"type": "compaction_trigger"}  # passed on, without an id
    assert sent.headers["x-codex-beta-features"] == "remote_compaction_v2"

    # the next turn continues from the compaction item; the backend verifies it
    fake.enqueue(Turn(output=[text("continuing after compaction")]))
    follow = {"model": "gpt-5.5", "input": [HISTORY[1], output[0],
              {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go on"}]}]}  # fmt: skip
    r2 = http.post("/v1/responses", json=follow)
    assert r2.status_code == 200, r2.text
    assert r2.json()["output_text"] == "continuing after compaction"
    replayed = fake.responses_requests[-1].body["input"][1]
    assert (
        replayed["type"] == "compaction" and replayed["encrypted_content"] == output[0]["encrypted_content"]
    )
    assert output[0]["encrypted_content"] in fake.accepted_compactions


def test_v1_compact_endpoint_is_forwarded_with_the_same_normalisation(
    http: httpx.Client, fake: FakeBackend
) -> None:
    """The body Codex's compact_remote.rs sends: model, input, instructions, tools, parallel_tool_calls,
    reasoning, text; plus what other clients add (store, a system item, a stored reference)."""
    fake.enqueue(Turn(output=[text("first answer")]))
    earlier = http.post("/v1/responses", json={"model": "gpt-5.5", "input": "earlier question"}).json()
    body = {
        "model": "gpt-5.5", "instructions": "Summarise.", "parallel_tool_calls": True,
        "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}],
        "reasoning": {"effort": "medium"}, "text": {"verbosity": "low"}, "store": True, "temperature": 0.3,
        "input": [{"role": "system", "content": "be brief"}, {"type": "item_reference", "id": earlier["output"][0]["id"]},
                  *HISTORY[1:]],
    }  # fmt: skip
    r = http.post("/v1/responses/compact", json=body)
    assert r.status_code == 200, r.text
    output = r.json()["output"]
    assert [i.get("type", "message") for i in output] == ["message", "compaction"]
    assert output[0]["content"][0]["text"] == "list the files"
    assert output[-1]["encrypted_content"] in fake.issued_compactions
    (sent,) = compact_requests(fake)
    assert sent.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert sent.headers["accept"] == "application/json"
    for key in ("stream", "store", "include", "temperature"):
        assert key not in sent.body
    assert sent.body["instructions"] == "Summarise." and sent.body["reasoning"] == {"effort": "medium"}
    kinds = [(i.get("type", "message"), i.get("role")) for i in sent.body["input"]]
    assert kinds[:2] == [
        ("message", "developer"),
        ("message", "assistant"),
    ]  # system item, expanded reference
    assert all("id" not in i for i in sent.body["input"])


def test_v1_compact_errors_keep_the_openai_envelope(http: httpx.Client, fake: FakeBackend) -> None:
    r = http.post(
        "/v1/responses/compact",
        json={"model": "gpt-5.5", "input": [{"type": "item_reference", "id": "rs_gone"}]},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "item_not_found"
    assert compact_requests(fake) == []
    # the backend refuses the history (an output without its call): its 400 in the OpenAI envelope
    r = http.post("/v1/responses/compact", json={"model": "gpt-5.5", "input": HISTORY[3:]})
    assert r.status_code == 400 and "No tool call found" in r.json()["error"]["message"]
    assert len(compact_requests(fake)) == 1
    assert http.get("/v1/responses/compact").status_code == 405


@pytest.mark.e2e
@pytest.mark.parametrize("codex", [CODEX, CODEX_NEW], ids=["codex-pinned", "codex-newest"])
def test_codex_remote_compaction_round_trips_through_the_proxy(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, codex: Path
) -> None:
    """A provider named "OpenAI" makes Codex compact remotely; a tiny auto-compact limit makes it compact
    after the first tool call. Codex sends the trigger, gets one compaction item, continues from it."""
    fake.enqueue(
        Turn(output=[function_call("exec_command", {"cmd": "echo hi"})], usage=BIG_USAGE),
        Turn(output=[text("done after compaction")]),
    )
    cp = run_codex(proxy.v1, "run echo hi", tmp_path, binary=codex, provider={"name": "OpenAI"},
                   config={"model_auto_compact_token_limit": 1000})  # fmt: skip
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "done after compaction" in cp.stdout
    _, trigger, after = fake.responses_requests
    assert trigger.body["input"][-1] == {"type": "compaction_trigger"}
    compaction = [i for i in after.body["input"] if i.get("type") == "compaction"]
    assert len(compaction) == 1 and compaction[0]["encrypted_content"] in fake.accepted_compactions
    assert not any(i.get("type") == "compaction_trigger" for i in after.body["input"])
