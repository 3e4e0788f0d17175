"""Web search and Wolfram Alpha tools: keys, requests and parsing, against a loopback HTTP server that
records what it receives (the real services are not reachable from here)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from llamastack.providers.tool_runtime.web.config import (
    BraveSearchConfig,
    TavilySearchConfig,
    WolframAlphaConfig,
)
from llamastack.providers.tool_runtime.web.provider import BraveSearch, TavilySearch, WolframAlpha
from llamastack.stack.apis.tools import ToolGroup
from llamastack.stack.errors import BadRequestError, UpstreamError
from llamastack.stack.outbound import OutboundConfig, OutboundPolicy, OutboundRefusedError

# The recorder listens on 127.0.0.1, which the default outbound policy refuses: allow that address.
LOOPBACK = OutboundPolicy(OutboundConfig(allow_hosts=["127.0.0.1"]))
GROUP = ToolGroup(identifier="builtin::websearch", provider_id="p")
RESPONSES = {
    "/brave": {
        "web": {"results": [{"title": "Llama", "url": "https://x/llama", "description": "A camelid."}]}
    },
    "/tavily": {
        "query": "llamas",
        "results": [{"title": "Llama", "url": "https://x/l", "content": "Andes."}],
    },
    "/wolfram": {
        "queryresult": {"success": True, "pods": [{"title": "Result", "subpods": [{"plaintext": "4"}]}]}
    },
}


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[str, list[dict]]]:
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            seen.append(
                {
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length).decode() if length else "",
                }
            )
            status = 401 if self.headers.get("X-Subscription-Token") == "bad" else 200
            body = json.dumps(RESPONSES.get(url.path, {})).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


async def test_missing_key_is_a_clear_400() -> None:
    tool = BraveSearch(BraveSearchConfig())
    with pytest.raises(BadRequestError) as info:
        await tool.invoke("web_search", {"query": "llamas"}, GROUP, None)
    assert "brave_search_api_key" in info.value.detail and "X-LlamaStack-Provider-Data" in info.value.detail


async def test_brave_with_key_from_provider_data(recorder) -> None:
    base, seen = recorder
    tool = BraveSearch(BraveSearchConfig(base_url=f"{base}/brave"), LOOPBACK)
    result = await tool.invoke("web_search", {"query": "llamas"}, GROUP, {"brave_search_api_key": "k1"})
    request = seen[-1]
    assert request["headers"]["X-Subscription-Token"] == "k1" and request["query"]["q"] == ["llamas"]
    assert json.loads(result.content)["top_k"][0]["url"] == "https://x/llama"
    with pytest.raises(BadRequestError, match="rejected the API key"):
        await tool.invoke("web_search", {"query": "llamas"}, GROUP, {"brave_search_api_key": "bad"})


async def test_tavily_and_wolfram(recorder) -> None:
    base, seen = recorder
    tavily = TavilySearch(TavilySearchConfig(base_url=f"{base}/tavily", api_key="cfg-key"), LOOPBACK)
    result = await tavily.invoke("web_search", {"query": "llamas"}, GROUP, None)
    assert seen[-1]["headers"]["Authorization"] == "Bearer cfg-key"
    assert json.loads(seen[-1]["body"])["query"] == "llamas"
    assert json.loads(result.content)["top_k"][0]["content"] == "Andes."
    wolfram = WolframAlpha(WolframAlphaConfig(base_url=f"{base}/wolfram"), LOOPBACK)
    result = await wolfram.invoke("wolfram_alpha", {"query": "2+2"}, GROUP, {"wolfram_alpha_api_key": "w"})
    assert seen[-1]["query"]["appid"] == ["w"] and seen[-1]["query"]["input"] == ["2+2"]
    assert json.loads(result.content)["pods"][0]["text"] == ["4"]


async def test_unreachable_service_is_502() -> None:
    config = WolframAlphaConfig(base_url="http://127.0.0.1:9/x", api_key="k", timeout_s=2)
    with pytest.raises(UpstreamError):
        await WolframAlpha(config, LOOPBACK).invoke("wolfram_alpha", {"query": "x"}, GROUP, None)


async def test_web_apis_go_through_the_outbound_policy(recorder) -> None:
    base, seen = recorder
    before = len(seen)
    tool = BraveSearch(BraveSearchConfig(base_url=f"{base}/brave"))  # the default policy
    with pytest.raises(OutboundRefusedError, match=r"not a public address \(loopback\)"):
        await tool.invoke("web_search", {"query": "llamas"}, GROUP, {"brave_search_api_key": "k1"})
    assert len(seen) == before  # the request never reached the server
