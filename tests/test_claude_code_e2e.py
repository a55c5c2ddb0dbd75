"""End to end: the real Claude Code (`claude -p`) on a GPT model through the proxy, the pinned release
and the newest one (each test runs on both)."""

from __future__ import annotations

import itertools
import json
import secrets
from pathlib import Path

import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, function_call, reasoning, text

from .clients import CLAUDE, CLAUDE_NEW, run_claude
from .conftest import Proxy

pytestmark = pytest.mark.e2e


@pytest.fixture(params=[CLAUDE, CLAUDE_NEW], ids=["pinned", "newest"])
def claude(request: pytest.FixtureRequest) -> Path:
    return request.param


def outputs(request_body: dict) -> dict[str, str]:
    return {
        i["call_id"]: i["output"] if isinstance(i["output"], str) else str(i["output"])
        for i in request_body["input"]
        if i.get("type") == "function_call_output"
    }


def test_text_answer(proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path) -> None:
    fake.enqueue(Turn(output=[text("Hi from a GPT model.")]))
    run = run_claude(proxy.url, "say hi", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["is_error"] is False
    assert run.result["result"] == "Hi from a GPT model."
    sent = fake.responses_requests[0].body
    assert sent["stream"] is True and sent["store"] is False
    assert not sent.get("instructions", "").startswith("x-anthropic-billing-header")
    assert {t["name"] for t in sent["tools"]} >= {"Bash", "Read", "Edit"}
    assert fake.responses_requests[0].body["prompt_cache_key"]


def test_bash_tool_round_trip(proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path) -> None:
    token = "tok" + secrets.token_hex(5)
    fake.enqueue(
        Turn(
            output=[
                text("I'll run it."),
                function_call("Bash", {"command": f"echo {token}", "description": "Echo"}),
            ]
        ),
        Turn(output=[text(f"The output was {token}.")]),
    )
    run = run_claude(proxy.url, f"run echo {token}", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["result"] == f"The output was {token}."
    results = run.tool_results()
    assert results and token in str(results[0]["content"]) and not results[0].get("is_error")
    second = fake.responses_requests[1].body
    assert any(token in out for out in outputs(second).values())
    call = next(i for i in second["input"] if i.get("type") == "function_call")
    assert call["name"] == "Bash" and token in call["arguments"]


def test_two_parallel_tool_calls(proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path) -> None:
    a, b = "alpha" + secrets.token_hex(3), "beta" + secrets.token_hex(3)
    fake.enqueue(
        Turn(output=[
            function_call("Bash", {"command": f"echo {a}", "description": "A"}, call_id="call_A"),
            function_call("Bash", {"command": f"echo {b}", "description": "B"}, call_id="call_B"),
        ]),
        Turn(output=[text("Both ran.")]),
    )  # fmt: skip
    run = run_claude(proxy.url, "run both", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["result"] == "Both ran."
    got = outputs(fake.responses_requests[1].body)
    assert a in got["call_A"] and b in got["call_B"]


def test_reasoning_survives_the_round_trip(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    fake.enqueue(
        Turn(
            output=[
                reasoning("Plan: run pwd."),
                function_call("Bash", {"command": "pwd", "description": "Where"}),
            ]
        ),
        Turn(output=[text("Done.")]),
    )
    run = run_claude(proxy.url, "where am I", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = fake.responses_requests[:2]
    assert "reasoning.encrypted_content" in first.body["include"]
    replayed = [i for i in second.body["input"] if i.get("type") == "reasoning"]
    assert replayed and replayed[0]["encrypted_content"] in fake.issued_encrypted_content
    assert replayed[0]["encrypted_content"] in fake.accepted_encrypted_content


def test_overloaded_then_success_is_retried(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    fake.enqueue(Turn.http_error(529, "Overloaded"), Turn(output=[text("Made it.")]))
    run = run_claude(proxy.url, "say hi", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert any(e.get("subtype") == "api_retry" for e in run.events)
    assert run.result["result"] == "Made it."
    assert len(fake.responses_requests) == 2


def test_bad_request_is_reported_not_retried(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    # the pinned Claude Code does not retry a 400; the newest retries it, the last time with tool search off
    fake.enqueue(*[Turn.http_error(400, "Unsupported parameter: foo")] * 8)
    run = run_claude(proxy.url, "say hi", tmp_path, claude=claude)
    assert run.returncode == 1
    assert run.result["is_error"] is True
    assert "Unsupported parameter: foo" in run.result["result"]
    sent = len(fake.responses_requests)
    assert sent == 1 if claude == CLAUDE else 1 < sent < 8


def test_failing_command_reaches_the_model_as_an_error(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    fake.enqueue(
        Turn(output=[function_call("Bash", {"command": "cat missing_file.txt", "description": "Read it"})]),
        Turn(output=[text("That file does not exist.")]),
    )
    run = run_claude(proxy.url, "show missing_file.txt", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.tool_results()[0]["is_error"] is True
    (output,) = outputs(fake.responses_requests[1].body).values()
    assert output.startswith("Error") and "missing_file.txt" in output


def test_image_tool_result_reaches_the_model_as_an_image(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    import base64

    work = tmp_path / "cc-work"
    work.mkdir(parents=True)
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    (work / "pixel.png").write_bytes(png)
    fake.enqueue(
        Turn(output=[function_call("Read", {"file_path": str(work / "pixel.png")})]),
        Turn(output=[text("A single pixel.")]),
    )
    run = run_claude(proxy.url, "look at pixel.png", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["result"] == "A single pixel."
    item = next(
        i for i in fake.responses_requests[1].body["input"] if i.get("type") == "function_call_output"
    )
    parts = item["output"]
    assert isinstance(parts, list)
    image = next(p for p in parts if p["type"] == "input_image")
    assert image["image_url"].startswith("data:image/png;base64,")


def test_cut_stream_is_recovered_by_claude_code(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    fake.enqueue(
        Turn(output=[text("this answer gets cut off", chunks=6)], cut_after=5),
        Turn(output=[text("Recovered.")]),
    )
    run = run_claude(proxy.url, "say hi", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["result"] == "Recovered."
    assert len(fake.responses_requests) == 2


def test_tool_search_round_trip_loads_the_found_tool(proxy: Proxy, fake: FakeBackend, tmp_path: Path) -> None:
    """Claude Code 2.1.332 with ENABLE_TOOL_SEARCH: ToolSearch answers with a `tool_reference`; the model
    must see the found tool's definition in the result and the tool itself in the next request."""
    fake.enqueue(
        Turn(output=[function_call("ToolSearch", {"query": "select:NotebookEdit"})]),
        Turn(output=[text("NotebookEdit is loaded.")]),
    )
    env = {"ENABLE_TOOL_SEARCH": "true"}
    run = run_claude(proxy.url, "find the notebook tool", tmp_path, env=env, claude=CLAUDE_NEW)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["result"] == "NotebookEdit is loaded."
    (block,) = run.tool_results()
    assert block["content"] == [{"type": "tool_reference", "tool_name": "NotebookEdit"}]  # what CC sent
    first, second = (r.body for r in fake.responses_requests[:2])
    assert "NotebookEdit" not in [t.get("name") for t in first["tools"]]  # deferred until found
    assert "DeferredToolPlaceholder" not in [t.get("name") for t in first["tools"]]
    assert "NotebookEdit" in [t.get("name") for t in second["tools"]]
    (output,) = outputs(second).values()
    assert (
        output.startswith("<function>") and '"name": "NotebookEdit"' in output and "notebook_path" in output
    )


def test_web_search_turn_shows_the_search_and_its_sources(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    """Claude Code's WebSearch tool asks for the search in a side request with Anthropic's web_search
    server tool; the backend's web_search_call and cited answer must come back as its search blocks."""
    from .test_web_search import ANSWER, PEP, PY, search_turn

    fake.enqueue(
        Turn(output=[function_call("WebSearch", {"query": "python 3.14 release date"})]),
        search_turn(),
        Turn(output=[text(f"Python 3.14 came out in October 2025 ([Download Python]({PY[0]})).")]),
    )
    run = run_claude(proxy.url, "when did python 3.14 come out?", tmp_path, "--allowedTools", "WebSearch",
                     claude=claude)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert PY[0] in run.result["result"]
    (block,) = run.tool_results()
    assert not block.get("is_error")
    shown = next(e for e in run.events if e.get("type") == "user")["tool_use_result"]
    assert shown["searchCount"] == 1 and shown["query"] == "python 3.14 release date"
    links = shown["results"][0]["content"]
    assert links == [{"title": PY[1], "url": PY[0]}, {"title": PEP[1], "url": PEP[0]}]
    assert ANSWER in shown["results"][1]
    side = fake.responses_requests[1].body
    assert side["tools"] == [{"type": "web_search"}]
    final = fake.responses_requests[2].body
    (output,) = outputs(final).values()
    assert PY[0] in output and PEP[1] in output  # the main model sees the sources


def test_four_turn_conversation_keeps_an_identical_prefix_upstream(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    """Prompt-cache health: every turn repeats the previous turn's request byte for byte (instructions,
    tools in order, key, session header, every earlier item) and only appends to it."""
    log_start = len(proxy.log())
    fake.enqueue(
        Turn(
            output=[reasoning("First a."), function_call("Bash", {"command": "echo a", "description": "a"})]
        ),
        Turn(output=[text("Now b."), function_call("Bash", {"command": "echo b", "description": "b"})]),
        Turn(output=[function_call("Bash", {"command": "echo c", "description": "c"})]),
        Turn(output=[text("Done: a, b, c.")]),
    )
    run = run_claude(proxy.url, "echo a, b and c one by one", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["result"] == "Done: a, b, c."
    turns = fake.responses_requests[:4]
    assert len(turns) == 4
    for before, after in itertools.pairwise(turns):
        b, a = before.body, after.body
        assert a["instructions"] == b["instructions"]
        assert json.dumps(a["tools"]) == json.dumps(b["tools"])
        assert a["prompt_cache_key"] == b["prompt_cache_key"]
        for header in ("session-id", "thread-id"):  # the backend's cache affinity follows session-id
            assert after.headers[header] == before.headers[header] != ""
        assert [json.dumps(i) for i in a["input"][: len(b["input"])]] == [json.dumps(i) for i in b["input"]]
        assert len(a["input"]) > len(b["input"])
    assert "cache_miss" not in proxy.log()[log_start:]


def test_a_1m_model_name_routes_like_its_base_name(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    """The `[1m]` suffix is how a Claude Code user lifts its context window over 200K (for gpt-5.5's
    272K, with CLAUDE_CODE_AUTO_COMPACT_WINDOW); the proxy routes the name as its base name."""
    fake.enqueue(Turn(output=[text("Routed.")]))
    run = run_claude(proxy.url, "say hi", tmp_path, "--model", "claude-opus-4-5[1m]", claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.result["result"] == "Routed."
    assert run.result["modelUsage"]["claude-opus-4-5[1m]"]["contextWindow"] == 1_000_000
    assert fake.responses_requests[0].body["model"] == "gpt-5.5"


def test_a_sub_agent_sharing_the_session_key_is_no_cache_miss(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    """A sub-agent's requests carry the session's key with their own instructions and tools: a thread
    of their own, not a changed prefix of the main conversation."""
    log_start = len(proxy.log())
    agent = {"description": "look", "prompt": "Say sub done.", "subagent_type": "general-purpose"}
    fake.enqueue(Turn(output=[function_call("Agent", agent)]), *[Turn(output=[text("done")])] * 4)
    run = run_claude(proxy.url, "use a subagent", tmp_path, claude=claude)
    assert run.returncode == 0, run.stderr[-3000:]
    sent = [r.body for r in fake.responses_requests]
    assert len({b["prompt_cache_key"] for b in sent}) == 1
    assert len({b["instructions"] for b in sent}) == 2  # the main conversation and the sub-agent
    assert "cache_miss" not in proxy.log()[log_start:]


def test_a_tool_loaded_later_keeps_every_earlier_prompt_token(
    proxy: Proxy, fake: FakeBackend, tmp_path: Path, claude: Path
) -> None:
    """Claude Code (both releases) with tool search: the found tool joins `tools` at its alphabetical place in
    the client's request; upstream it is appended after the tools already sent, so each request of the
    session extends the previous one (instructions, tools, history) exactly where the client's did."""
    log_start = len(proxy.log())
    fake.enqueue(
        Turn(output=[function_call("Bash", {"command": "echo a", "description": "a"})]),
        Turn(output=[function_call("ToolSearch", {"query": "select:NotebookEdit"})]),
        Turn(output=[text("NotebookEdit is loaded.")]),
    )
    run = run_claude(proxy.url, "echo a, then find the notebook tool", tmp_path,
                     env={"ENABLE_TOOL_SEARCH": "true"}, claude=claude)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    recorded = fake.responses_requests[:3]
    for header in ("session-id", "thread-id"):  # one per conversation, as the Codex CLI sends them
        assert len({r.headers[header] for r in recorded}) == 1, header
    turns = [r.body for r in recorded]
    names = [[t.get("name") for t in body["tools"]] for body in turns]
    assert "NotebookEdit" not in names[1] and names[2][-1] == "NotebookEdit"  # appended, not alphabetical
    for before, after in itertools.pairwise(turns):
        assert after["instructions"] == before["instructions"]
        sent = [json.dumps(t) for t in before["tools"]]
        assert [json.dumps(t) for t in after["tools"][: len(sent)]] == sent
        assert [json.dumps(i) for i in after["input"][: len(before["input"])]] == [
            json.dumps(i) for i in before["input"]
        ]
    misses = [line for line in proxy.log()[log_start:].splitlines() if "cache_miss" in line]
    assert all("NotebookEdit added at the end" in line for line in misses), misses
