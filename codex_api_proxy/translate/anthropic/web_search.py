"""The backend's hosted web search as Anthropic's server tool blocks, for the stream and whole responses.

A `web_search_call` item whose action is a search becomes a `server_tool_use` block (name
"web_search", input {"query"}) followed by a `web_search_tool_result` block listing the pages found.
The pages are the action's `sources` when the backend sent them, else the pages the following answer
cites; their titles come from the answer's `url_citation` annotations (the URL stands in for a title
the backend never gave). Those annotations become `web_search_result_location` citations on the text.
`open_page` / `find_in_page` actions add their page to the search before them. Each search counts in
`usage.server_tool_use.web_search_requests`, which is what Claude Code reports as "Did N searches".
"""

from __future__ import annotations

from typing import Any

SERVER_TOOL_NAME = "web_search"


def server_tool_id(item: dict[str, Any]) -> str:
    """The server_tool_use id for a web_search_call item (stable: derived from the item id)."""
    item_id = str(item.get("id") or "")
    return "srvtoolu_" + (item_id.split("_", 1)[-1] or "0")


def search_query(item: dict[str, Any]) -> str | None:
    """The query of a search action; None for page visits (open_page, find_in_page) and the rest."""
    action = item.get("action") if isinstance(item.get("action"), dict) else {}
    if action.get("type", "search") != "search":
        return None
    queries = action.get("queries") if isinstance(action.get("queries"), list) else []
    query = action.get("query") or next((q for q in queries if isinstance(q, str) and q), "")
    return str(query)


def action_urls(item: dict[str, Any]) -> list[str]:
    """Pages an item names: a search's `sources`, a page visit's `url`."""
    action = item.get("action") if isinstance(item.get("action"), dict) else {}
    urls = [s.get("url") for s in action.get("sources") or [] if isinstance(s, dict)]
    urls.append(action.get("url"))
    return [u for u in urls if isinstance(u, str) and u]


def url_citations(part: dict[str, Any]) -> list[dict[str, Any]]:
    """The url_citation annotations of an output_text part."""
    return [
        a
        for a in part.get("annotations") or []
        if isinstance(a, dict) and a.get("type") == "url_citation" and isinstance(a.get("url"), str)
    ]


def message_citations(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for part in item.get("content") or [] if isinstance(part, dict) for a in url_citations(part)]


def use_block(item: dict[str, Any], query: str) -> dict[str, Any]:
    return {"type": "server_tool_use", "id": server_tool_id(item), "name": SERVER_TOOL_NAME,
            "input": {"query": query}}  # fmt: skip


def result_block(tool_id: str, urls: list[str], citations: list[dict[str, Any]]) -> dict[str, Any]:
    """The web_search_tool_result block: the search's pages (or, without any, the cited ones)."""
    titles = {a["url"]: a.get("title") for a in citations}
    pages = list(dict.fromkeys(urls or [a["url"] for a in citations]))
    content = [
        {"type": "web_search_result", "url": url, "title": titles.get(url) or url, "encrypted_content": "",
         "page_age": None}
        for url in pages
    ]  # fmt: skip
    return {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": content}


def citation(annotation: dict[str, Any], text: str) -> dict[str, Any]:
    """A url_citation annotation as an Anthropic web search citation over the text it covers."""
    start, end = annotation.get("start_index"), annotation.get("end_index")
    cited = text[start:end] if isinstance(start, int) and isinstance(end, int) else ""
    return {"type": "web_search_result_location", "url": annotation["url"],
            "title": annotation.get("title") or annotation["url"], "encrypted_index": "", "cited_text": cited}  # fmt: skip


def with_searches(usage: dict[str, Any], searches: int) -> dict[str, Any]:
    """Anthropic usage with the search count, when there was a search."""
    return {**usage, "server_tool_use": {"web_search_requests": searches}} if searches else usage


def search_pages(output: list[dict[str, Any]], index: int) -> tuple[list[str], list[dict[str, Any]]]:
    """(pages, citations) of the search at `output[index]` in a whole response: its own pages, those of
    the page visits after it, and the citations of the answers up to the next search."""
    urls, cites = action_urls(output[index]), []
    for later in output[index + 1 :]:
        if later.get("type") == "web_search_call":
            if search_query(later) is not None:
                break
            urls += action_urls(later)
        elif later.get("type") == "message":
            cites += message_citations(later)
    return urls, cites
