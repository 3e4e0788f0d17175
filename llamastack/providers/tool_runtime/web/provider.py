"""Web search (Brave, Tavily) and Wolfram Alpha as tools. Keys come from the provider config or, per
request, from the X-LlamaStack-Provider-Data header ({"brave_search_api_key": ...} and so on)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from llamastack.stack.apis.tools import ToolDef, ToolGroup, ToolInvocationResult, ToolParameter
from llamastack.stack.boundary import Boundary
from llamastack.stack.errors import BadRequestError, MissingCredentialsError, UpstreamError
from llamastack.stack.outbound import OutboundPolicy
from llamastack.stack.secrets import secret_value

from .config import BraveSearchConfig, TavilySearchConfig, WolframAlphaConfig

_QUERY = [ToolParameter(name="query", parameter_type="string", description="The query to search for.")]


class _WebTool:
    tool: ToolDef
    key_name: str  # its name in X-LlamaStack-Provider-Data

    def __init__(
        self,
        config: BraveSearchConfig | TavilySearchConfig | WolframAlphaConfig,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.config = config
        self.outbound = outbound or OutboundPolicy()

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def register_toolgroup(self, group: ToolGroup) -> ToolGroup:
        return group

    async def unregister_toolgroup(self, group: ToolGroup) -> None:
        return None

    async def list_tools(self, group: ToolGroup) -> list[ToolDef]:
        return [self.tool]

    def _key(self, provider_data: dict[str, Any] | None) -> str:
        key = (provider_data or {}).get(self.key_name) or secret_value(self.config.api_key)
        if not isinstance(key, str) or not key:
            raise MissingCredentialsError(
                f"{self.tool.name} needs an API key: set api_key in the provider config or send "
                f'X-LlamaStack-Provider-Data: {{"{self.key_name}": "<key>"}}.'
            )
        return key

    async def invoke(
        self, tool_name: str, kwargs: dict[str, Any], group: ToolGroup, provider_data: dict[str, Any] | None
    ) -> ToolInvocationResult:
        if tool_name != self.tool.name:
            raise BadRequestError(f"Tool group '{group.identifier}' has no tool '{tool_name}'.")
        key = self._key(provider_data)  # before the arguments, so a key-less probe learns only that
        query = kwargs.get("query")
        if not isinstance(query, str) or not query.strip():
            raise BadRequestError(f"{tool_name} needs a non-empty string argument 'query'.")
        async with self._boundary(key):
            async with self.outbound.async_client(timeout=self.config.timeout_s) as client:
                response = await self._request(client, query, key)
            response.raise_for_status()
            results = self._results(response)  # an answer that is not the expected JSON is a 502 too
        return ToolInvocationResult(content=json.dumps(results, ensure_ascii=False))

    def _boundary(self, key: str) -> Boundary:
        # Scrubbed: a key may travel in the URL (Wolfram's appid), and upstreams may echo it.
        return Boundary(
            self.tool.name,
            self.config.base_url,
            secrets=[key],
            credentials="API key",
            credentials_hint=(
                f"Set a valid api_key in the provider config or send X-LlamaStack-Provider-Data: "
                f'{{"{self.key_name}": "<key>"}}.'
            ),
            # The caller may have sent the key; a missing page means base_url is wrong, not the query.
            credentials_error=BadRequestError,
            statuses={404: UpstreamError},
        )

    async def _request(self, client: httpx.AsyncClient, query: str, key: str) -> httpx.Response:
        raise NotImplementedError

    def _results(self, response: httpx.Response) -> Any:
        raise NotImplementedError


class BraveSearch(_WebTool):
    tool = ToolDef(
        name="web_search", description="Search the web for up-to-date information.", parameters=_QUERY
    )
    key_name = "brave_search_api_key"

    async def _request(self, client: httpx.AsyncClient, query: str, key: str) -> httpx.Response:
        return await client.get(
            self.config.base_url,
            params={"q": query, "count": self.config.max_results},
            headers={"X-Subscription-Token": key, "Accept": "application/json"},
        )

    def _results(self, response: httpx.Response) -> Any:
        hits = (response.json().get("web") or {}).get("results") or []
        return {
            "query": response.request.url.params.get("q"),
            "top_k": [
                {"title": h.get("title"), "url": h.get("url"), "description": h.get("description")}
                for h in hits[: self.config.max_results]
            ],
        }


class TavilySearch(_WebTool):
    tool = ToolDef(
        name="web_search", description="Search the web for up-to-date information.", parameters=_QUERY
    )
    key_name = "tavily_search_api_key"

    async def _request(self, client: httpx.AsyncClient, query: str, key: str) -> httpx.Response:
        return await client.post(
            self.config.base_url,
            json={"query": query, "max_results": self.config.max_results},
            headers={"Authorization": f"Bearer {key}"},
        )

    def _results(self, response: httpx.Response) -> Any:
        body = response.json()
        return {
            "query": body.get("query"),
            "top_k": [
                {"title": r.get("title"), "url": r.get("url"), "content": r.get("content")}
                for r in (body.get("results") or [])[: self.config.max_results]
            ],
        }


class WolframAlpha(_WebTool):
    tool = ToolDef(
        name="wolfram_alpha",
        description="Compute answers to math, science and factual questions with Wolfram Alpha.",
        parameters=_QUERY,
    )
    key_name = "wolfram_alpha_api_key"

    async def _request(self, client: httpx.AsyncClient, query: str, key: str) -> httpx.Response:
        return await client.get(
            self.config.base_url,
            params={"input": query, "appid": key, "format": "plaintext", "output": "json"},
        )

    def _results(self, response: httpx.Response) -> Any:
        result = response.json().get("queryresult") or {}
        pods = [
            {
                "title": p.get("title"),
                "text": [s.get("plaintext") for s in p.get("subpods") or [] if s.get("plaintext")],
            }
            for p in result.get("pods") or []
        ]
        return {"success": result.get("success"), "pods": pods}
