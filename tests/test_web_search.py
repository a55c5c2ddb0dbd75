"""Web search end to end: the backend's web_search_call items and url_citation annotations (shaped as
the public Responses API documents them, by the fake backend) become Anthropic server_tool_use +
web_search_tool_result blocks and text citations, streaming and not, through the real proxy."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import httpx2
import pytest

from codex_api_proxy.core.sse import parse_all
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, cited_text, web_search
from codex_api_proxy.translate.anthropic import from_response
from codex_api_proxy.translate.base import RequestContext

from .conftest import Proxy
from .test_anthropic_translate import check_structure

SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
PY = ("https://www.python.org/downloads/", "Download Python", "Python 3.14")
PEP = ("https://peps.python.org/pep-0745/", "PEP 745 - Python 3.14 Release Schedule", "October 2025")
ANSWER = "Python 3.14 came out in October 2025."


def search_turn() -> Turn:
    return Turn(output=[web_search("python 3.14 release date", PY[0], PEP[0]), cited_text(ANSWER, PY, PEP)])


def ask(**kw: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 1024, "tools": [SEARCH_TOOL],
            "tool_choice": {"type": "tool", "name": "web_search"},
            "messages": [{"role": "user", "content": "When did Python 3.14 come out?"}], **kw}  # fmt: skip


@pytest.fixture
def client(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=proxy.url,
        api_key="unused",
        max_retries=0,
        http_client=httpx2.Client(trust_env=False, timeout=30),
    )


def check_message(message: anthropic.types.Message) -> None:
    use, result, answer = message.content
    assert use.type == "server_tool_use" and use.name == "web_search"
    assert use.input == {"query": "python 3.14 release date"}
    assert result.type == "web_search_tool_result" and result.tool_use_id == use.id
    assert [(r.url, r.title) for r in result.content] == [PY[:2], PEP[:2]]
    assert answer.type == "text" and answer.text == ANSWER
    assert [(c.url, c.title, c.cited_text) for c in answer.citations] == [PY, PEP]
    assert message.usage.server_tool_use.web_search_requests == 1
    assert message.stop_reason == "end_turn"


def test_streamed_search_shows_the_search_its_sources_and_citations(
    client: anthropic.Anthropic, fake: FakeBackend
) -> None:
    fake.enqueue(search_turn())
    with client.messages.stream(**ask()) as stream:
        message = stream.get_final_message()
    check_message(message)
    sent = fake.responses_requests[-1].body
    assert sent["tools"] == [{"type": "web_search"}] and sent["tool_choice"] == "required"


def test_whole_response_shows_the_same(client: anthropic.Anthropic, fake: FakeBackend) -> None:
    fake.enqueue(search_turn())
    check_message(client.messages.create(**ask()))


def test_raw_stream_is_well_formed(http: httpx.Client, fake: FakeBackend) -> None:
    fake.enqueue(search_turn())
    raw = http.post(
        "/v1/messages", json=ask(stream=True), headers={"anthropic-version": "2023-06-01"}
    ).content
    payloads = check_structure(raw)
    starts = [d["content_block"]["type"] for d in payloads if d["type"] == "content_block_start"]
    assert starts == ["server_tool_use", "web_search_tool_result", "text"]
    deltas = [d["delta"]["type"] for d in payloads if d["type"] == "content_block_delta"]
    assert deltas.count("citations_delta") == 2
    assert [e.event for e in parse_all(raw)][-1] == "message_stop"


def response(*items: dict[str, Any]) -> dict[str, Any]:
    return {"id": "resp_1", "output": list(items), "usage": {"input_tokens": 10, "output_tokens": 5}}


def searched(item_id: str, action: dict[str, Any]) -> dict[str, Any]:
    return {"type": "web_search_call", "id": item_id, "status": "completed", "action": action}


def test_sources_page_visits_and_several_searches_in_a_whole_response() -> None:
    answer = {"type": "message", "role": "assistant", "content": [
        {"type": "output_text", "text": "See a and b.", "annotations": [
            {"type": "url_citation", "start_index": 4, "end_index": 5, "url": "https://a.test/", "title": "A"}]}]}  # fmt: skip
    out = from_response(
        response(
            searched(
                "ws_1",
                {"type": "search", "query": "first", "sources": [{"type": "url", "url": "https://a.test/"}]},
            ),
            searched("ws_2", {"type": "open_page", "url": "https://b.test/"}),
            searched("ws_3", {"type": "search", "queries": ["second", "other"]}),
            answer,
        ),
        RequestContext(model="claude-haiku-4-5"),
    )
    kinds = [b["type"] for b in out["content"]]
    assert kinds == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    first, second = out["content"][1]["content"], out["content"][3]["content"]
    assert [(r["url"], r["title"]) for r in first] == [
        ("https://a.test/", "https://a.test/"),
        ("https://b.test/", "https://b.test/"),
    ]
    assert [(r["url"], r["title"]) for r in second] == [("https://a.test/", "A")]  # the cited page
    assert out["content"][2]["input"] == {"query": "second"}
    assert out["content"][4]["citations"][0]["cited_text"] == "a"
    assert out["usage"]["server_tool_use"] == {"web_search_requests": 2}


def test_no_search_no_server_tool_usage() -> None:
    out = from_response(response(), RequestContext(model="m"))
    assert "server_tool_use" not in out["usage"]


def test_fake_backend_streams_web_search_like_the_responses_api(fake: FakeBackend) -> None:
    from .conftest import ACCESS_TOKEN, ACCOUNT_ID
    from .test_fake_backend import body

    headers = {"authorization": f"Bearer {ACCESS_TOKEN}", "chatgpt-account-id": ACCOUNT_ID}
    for include, sources in (([], None), (["web_search_call.action.sources"], [PY[0], PEP[0]])):
        fake.enqueue(search_turn())
        raw = httpx.post(f"{fake.url}/responses", json=body(include=include), headers=headers).content
        evs = [e.json() for e in parse_all(raw)]
        kinds = [e["type"] for e in evs if e.get("output_index") == 0]
        assert kinds == ["response.output_item.added", "response.web_search_call.in_progress",
                         "response.web_search_call.searching", "response.web_search_call.completed",
                         "response.output_item.done"]  # fmt: skip
        action = evs[kinds.index("response.output_item.done") + 2]["item"]["action"]
        assert action["type"] == "search" and action["query"] == "python 3.14 release date"
        assert [s["url"] for s in action.get("sources", [])] == (sources or [])
        added = [e["annotation"] for e in evs if e["type"] == "response.output_text.annotation.added"]
        assert [(a["url"], a["title"], ANSWER[a["start_index"] : a["end_index"]]) for a in added] == [PY, PEP]


def search_events(oi: int, action: dict[str, Any]) -> list[dict[str, Any]]:
    item = {"type": "web_search_call", "id": f"ws_{oi}", "status": "in_progress"}
    return [
        {"type": "response.output_item.added", "output_index": oi, "item": item},
        {"type": "response.web_search_call.searching", "output_index": oi, "item_id": f"ws_{oi}"},
        {"type": "response.output_item.done", "output_index": oi,
         "item": {**item, "status": "completed", "action": action}},
    ]  # fmt: skip


@pytest.mark.parametrize("size", [0, 1, 7])
def test_stream_search_then_a_tool_call_and_a_page_visit(size: int) -> None:
    """No answer text follows the search: its result is released when the call's events, held behind
    it, are replayed; a page visit adds its page; every split of the bytes gives the same answer."""
    from .test_anthropic_translate import call_events, completed, created, sdk_final, stream

    events = (
        created()
        + search_events(
            0, {"type": "search", "query": "q", "sources": [{"type": "url", "url": "https://a.test/"}]}
        )
        + search_events(1, {"type": "open_page", "url": "https://b.test/"})
        + call_events(2, "Bash", '{"command":"ls"}')
        + completed()
    )
    raw = stream(events, RequestContext(model="claude-haiku-4-5"), size)
    check_structure(raw)
    message = sdk_final(raw)
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result", "tool_use"]
    assert [r.url for r in message.content[1].content] == ["https://a.test/", "https://b.test/"]
    assert message.content[2].input == {"command": "ls"}
    assert message.stop_reason == "tool_use" and message.usage.server_tool_use.web_search_requests == 1


def test_search_tool_options_the_backend_knows_are_kept() -> None:
    from codex_api_proxy.translate.anthropic import to_upstream

    where = {"type": "approximate", "city": "Oslo", "country": "NO", "timezone": "Europe/Oslo"}
    tool = {
        **SEARCH_TOOL,
        "allowed_domains": ["python.org"],
        "blocked_domains": ["x.test"],
        "user_location": where,
    }
    up = to_upstream({**ask(), "tools": [tool, SEARCH_TOOL]}, RequestContext(model="claude-haiku-4-5"))
    assert up["tools"] == [
        {"type": "web_search", "filters": {"allowed_domains": ["python.org"]}, "user_location": where}
    ]
