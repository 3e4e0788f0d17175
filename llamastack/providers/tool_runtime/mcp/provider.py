"""Tool groups served by MCP servers, through the official `mcp` SDK client.

A group is registered with ``mcp_endpoint.uri``: a URL ending in ``/sse`` speaks the SSE transport,
anything else streamable HTTP (``args.transport`` forces one: ``"sse"`` or ``"streamable_http"``).

Every operation opens its own MCP session (handshake, work, close) and keeps nothing afterwards, so
a server that restarts, redeploys or changes its tools is simply seen fresh by the next request.
Per-request headers (e.g. ``Authorization``) come from provider data:
``{"mcp_headers": {"<endpoint uri>": {"Authorization": "Bearer ..."}}}``. Every connection goes
through the stack's outbound policy: an endpoint on a non-public address needs ``server.outbound``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from llamastack.stack.apis.common import ImageContentItem, InterleavedContentItem, TextContentItem
from llamastack.stack.apis.tools import ToolDef, ToolGroup, ToolInvocationResult, ToolParameter
from llamastack.stack.boundary import Boundary, Failure, http_status_text
from llamastack.stack.errors import BadRequestError, NotFoundError, StackError, UpstreamError
from llamastack.stack.library_imports import libraries_imported
from llamastack.stack.outbound import OutboundPolicy

from .config import MCPToolRuntimeConfig

if TYPE_CHECKING:
    import ssl

    import httpx2
    import mcp.types
    from mcp import Client

log = logging.getLogger(__name__)

Transport = Literal["sse", "streamable_http"]
_TRANSPORT_ALIASES: dict[str, Transport] = {
    "sse": "sse",
    "streamable_http": "streamable_http",
    "streamable-http": "streamable_http",
    "http": "streamable_http",
}
_MAX_LIST_PAGES = 100  # a server whose pagination never ends cannot hang a request
_T = TypeVar("_T")


@dataclass
class _Endpoint:
    """One MCP server as one operation sees it."""

    uri: str
    transport: Transport
    headers: dict[str, str] = field(default_factory=dict)
    # The last HTTP error status the server answered with: the SDK's streamable HTTP transport turns
    # e.g. a 401 into a generic JSON-RPC error, and the status is what tells the operator what is wrong.
    http_error: int | None = None

    def record(self, status: int) -> None:
        if status >= 400:
            self.http_error = status


# Builds the error for a server that could not be reached or did not speak MCP, from the reason (in
# words for the caller) and the last HTTP error status the server answered with.
_FailureError = Callable[[str, int | None], StackError]


class _CredentialsWanted(BadRequestError):
    """The server answered HTTP 401/403: it is there and wants credentials."""


class MCPToolRuntime:
    def __init__(self, config: MCPToolRuntimeConfig, outbound: OutboundPolicy | None = None) -> None:
        self.config = config
        # Every connection to an MCP server goes through the stack's outbound policy.
        self.outbound = outbound or OutboundPolicy()
        # Building an SSL context costs ~18 ms, most of a session's set-up; one context serves every
        # HTTP client this provider opens (it holds only the trust settings, nothing per server).
        self._ssl_context: ssl.SSLContext | None = None

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    # --- ToolRuntimeProvider ---------------------------------------------------------------------

    async def register_toolgroup(
        self, group: ToolGroup, provider_data: dict[str, Any] | None = None
    ) -> ToolGroup:
        endpoint = self._endpoint(group, provider_data)

        def unreachable(reason: str, http_status: int | None) -> StackError:
            if http_status in (401, 403):
                return _CredentialsWanted(reason)
            return BadRequestError(f"cannot reach MCP server at {endpoint.uri}: {reason}")

        try:
            tools = await self._run(endpoint, _list_all_tools, failed=unreachable)
        except _CredentialsWanted:
            # Credentials only arrive per request (provider_data.mcp_headers): registration cannot
            # check more than that the server is there.
            log.warning(
                "MCP server at %s answered HTTP %s; tool group '%s' registered without listing its tools",
                endpoint.uri,
                endpoint.http_error,
                group.identifier,
            )
            return group
        log.info(
            "MCP tool group '%s' at %s (%s): %d tools",
            group.identifier,
            endpoint.uri,
            endpoint.transport,
            len(tools),
        )
        return group

    async def unregister_toolgroup(self, group: ToolGroup) -> None:
        return None  # nothing is held per group

    async def list_tools(
        self, group: ToolGroup, provider_data: dict[str, Any] | None = None
    ) -> list[ToolDef]:
        endpoint = self._endpoint(group, provider_data)
        tools = await self._run(endpoint, _list_all_tools, failed=_upstream(endpoint, "listing tools"))
        return [_tool_def(tool) for tool in tools]

    async def invoke(
        self, tool_name: str, kwargs: dict[str, Any], group: ToolGroup, provider_data: dict[str, Any] | None
    ) -> ToolInvocationResult:
        endpoint = self._endpoint(group, provider_data)
        call_timeout_s = self.config.call_timeout_s

        async def call(client: Client) -> mcp.types.CallToolResult:
            from mcp import MCPError
            from mcp.types import INVALID_PARAMS

            # Listing first costs no extra round trip: the SDK lists the tools anyway on a fresh
            # session, to check structured results against their output schema.
            offered = [tool.name for tool in await _list_all_tools(client)]
            if tool_name not in offered:
                raise NotFoundError(
                    f"Tool '{tool_name}' not found on the MCP server of tool group '{group.identifier}' "
                    f"({endpoint.uri}). It offers: {', '.join(offered) or 'no tools'}."
                )
            try:
                return await client.call_tool(tool_name, kwargs, read_timeout_seconds=call_timeout_s)
            except MCPError as exc:
                if exc.code == INVALID_PARAMS:
                    raise BadRequestError(
                        f"Tool '{tool_name}' rejected its arguments: {exc.message}"
                    ) from None
                raise

        started = time.perf_counter()
        failed = _upstream(endpoint, f"calling tool '{tool_name}'")
        result = await self._run(endpoint, call, failed=failed, extra_time_s=call_timeout_s)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)

        content = list(_content_items(result.content))
        metadata: dict[str, Any] = {"duration_ms": elapsed_ms}
        if result.structured_content is not None:
            metadata["structured_content"] = result.structured_content
        if result.is_error:
            text = "\n".join(item.text for item in content if isinstance(item, TextContentItem))
            return ToolInvocationResult(
                content=content,
                error_message=text or f"Tool '{tool_name}' reported an error without a message.",
                error_code=1,
                metadata=metadata,
            )
        return ToolInvocationResult(content=content, metadata=metadata)

    # --- sessions --------------------------------------------------------------------------------

    def _endpoint(self, group: ToolGroup, provider_data: dict[str, Any] | None) -> _Endpoint:
        if group.mcp_endpoint is None or not group.mcp_endpoint.uri:
            raise BadRequestError(
                f"Tool group '{group.identifier}' needs mcp_endpoint (mcp_endpoint.uri: the MCP server's "
                "URL) to be served by the model-context-protocol provider."
            )
        uri = group.mcp_endpoint.uri
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadRequestError(f"mcp_endpoint.uri must be an http(s) URL, got '{uri}'.")
        forced = (group.args or {}).get("transport")
        if forced is None:
            transport: Transport = "sse" if parts.path.rstrip("/").endswith("/sse") else "streamable_http"
        elif isinstance(forced, str) and forced.lower() in _TRANSPORT_ALIASES:
            transport = _TRANSPORT_ALIASES[forced.lower()]
        else:
            raise BadRequestError(f"args.transport must be 'sse' or 'streamable_http', got {forced!r}.")
        return _Endpoint(uri=uri, transport=transport, headers=_headers_for(uri, provider_data))

    async def _run(
        self,
        endpoint: _Endpoint,
        operation: Callable[[Client], Awaitable[_T]],
        *,
        failed: _FailureError,
        extra_time_s: float = 0.0,
    ) -> _T:
        """Opens a session, runs `operation` on it and closes it. Failures to reach or talk to the server
        become the error `failed` makes; the stack's own typed errors raised by `operation` pass through."""
        # The SDK's first import, in a thread (see llamastack/stack/library_imports.py); every other
        # import of it in this module runs after this one.
        await libraries_imported("anyio", "httpx2", "mcp", "mcp.client.sse", "mcp.client.streamable_http")
        import anyio
        from mcp import Client

        connect_s = self.config.connect_timeout_s
        deadline_s = connect_s + extra_time_s + 1.0  # the requests' own timeouts should fire first
        async with _boundary(endpoint, deadline_s, failed):
            with anyio.fail_after(deadline_s):
                async with AsyncExitStack() as stack:
                    transport = await self._transport(
                        stack, endpoint, read_timeout_s=connect_s + extra_time_s
                    )
                    # mode="auto": servers on the 2026 protocol are adopted directly, older ones get the
                    # initialize handshake. cache=None: nothing may outlive this one operation.
                    client = Client(transport, mode="auto", cache=None, read_timeout_seconds=connect_s)
                    await stack.enter_async_context(client)
                    endpoint.http_error = None  # e.g. a legacy server's 4xx to the discovery probe
                    return await operation(client)

    async def _transport(self, stack: AsyncExitStack, endpoint: _Endpoint, *, read_timeout_s: float) -> Any:
        import httpx2

        connect_s = self.config.connect_timeout_s
        if self._ssl_context is None:
            self._ssl_context = httpx2.create_ssl_context()
        ssl_context = self._ssl_context

        async def record(response: httpx2.Response) -> None:
            endpoint.record(response.status_code)

        def http_client(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            client: httpx2.AsyncClient = self.outbound.async_client_httpx2(
                headers=headers,
                timeout=timeout or httpx2.Timeout(connect_s, read=read_timeout_s),
                auth=auth,
                verify=ssl_context,
                event_hooks={"response": [record]},
            )
            return client

        if endpoint.transport == "sse":
            from mcp.client.sse import sse_client

            return sse_client(
                endpoint.uri,
                headers=endpoint.headers or None,
                timeout=connect_s,
                sse_read_timeout=read_timeout_s,
                httpx_client_factory=http_client,
            )
        from mcp.client.streamable_http import streamable_http_client

        client = await stack.enter_async_context(http_client(headers=endpoint.headers or None))
        return streamable_http_client(endpoint.uri, http_client=client)


# --- helpers -------------------------------------------------------------------------------------


async def _list_all_tools(client: Client) -> list[mcp.types.Tool]:
    tools: list[mcp.types.Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _canonical_uri(uri: str) -> str:
    parts = urlsplit(uri.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def _headers_for(uri: str, provider_data: Mapping[str, Any] | None) -> dict[str, str]:
    """The headers provider_data.mcp_headers gives this endpoint (matched ignoring a trailing slash and
    the case of scheme and host)."""
    by_endpoint = (provider_data or {}).get("mcp_headers")
    if by_endpoint is None:
        return {}
    if not isinstance(by_endpoint, Mapping):
        raise BadRequestError("provider_data.mcp_headers must map MCP endpoint URIs to header objects.")
    wanted = _canonical_uri(uri)
    for key, headers in by_endpoint.items():
        if not isinstance(key, str) or _canonical_uri(key) != wanted:
            continue
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise BadRequestError(
                f"provider_data.mcp_headers['{key}'] must be an object of header names to string values."
            )
        return dict(headers)
    return {}


def _upstream(endpoint: _Endpoint, doing: str) -> _FailureError:
    def failed(reason: str, http_status: int | None) -> StackError:
        return UpstreamError(f"MCP server at {endpoint.uri} failed while {doing}: {reason}")

    return failed


def _boundary(endpoint: _Endpoint, deadline_s: float, failed: _FailureError) -> Boundary:
    """Failures talking to the server, worded as the reason `failed` builds its error from. HTTP and
    socket errors are read by the stack's boundary; these rules add the SDK's own."""
    from mcp import MCPError
    from mcp.types import REQUEST_TIMEOUT

    def mcp_error(exc: BaseException) -> Failure:
        assert isinstance(exc, MCPError)
        if exc.code == REQUEST_TIMEOUT:
            return Failure("timeout", f"no answer in time ({exc.message})")
        return Failure("other", f"MCP error {exc.code}: {exc.message}")

    def word(failure: Failure) -> StackError:
        reason = failure.reason
        if failure.status is not None:
            endpoint.record(failure.status)
        elif endpoint.http_error is not None:
            # The streamable HTTP transport reports e.g. a 401 as a generic JSON-RPC error.
            reason = f"{http_status_text(endpoint.http_error)} ({reason})"
        return failed(reason, endpoint.http_error)

    return Boundary(
        f"MCP server at {endpoint.uri}",
        endpoint.uri,
        rules={
            MCPError: mcp_error,
            TimeoutError: lambda _: Failure("timeout", f"no answer within {deadline_s:g}s"),
            # The SDK's own protocol checks (a bad endpoint event, a result that does not match the
            # tool's output schema, ...).
            ValueError: _described,
            RuntimeError: _described,
        },
        error=word,
    )


def _described(exc: BaseException) -> Failure:
    return Failure("other", f"{type(exc).__name__}: {exc}")


def _json_type(schema: Mapping[str, Any]) -> str:
    """A JSON schema's type as one word (string, integer, number, boolean, array, object); optional
    values (``["integer", "null"]``, ``anyOf: [{...}, {"type": "null"}]``) give their non-null type."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    for one in kinds:
        if isinstance(one, str) and one != "null":
            return one
    for combinator in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(combinator) or []:
            if isinstance(option, Mapping) and option.get("type") != "null":
                return _json_type(option)
    if "properties" in schema or "$ref" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"  # untyped: the model sends text, and input_schema in metadata has the full truth


def _tool_def(tool: mcp.types.Tool) -> ToolDef:
    schema = tool.input_schema or {}
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    parameters = [
        ToolParameter(
            name=name,
            parameter_type=_json_type(prop) if isinstance(prop, Mapping) else "string",
            description=str(prop.get("description") or "") if isinstance(prop, Mapping) else "",
            required=name in required,
            default=prop.get("default") if isinstance(prop, Mapping) else None,
        )
        for name, prop in properties.items()
    ]
    metadata: dict[str, Any] = {"input_schema": schema}
    if tool.output_schema is not None:
        metadata["output_schema"] = tool.output_schema
    if tool.annotations is not None:
        metadata["annotations"] = tool.annotations.model_dump(mode="json", exclude_none=True)
    return ToolDef(name=tool.name, description=tool.description, parameters=parameters, metadata=metadata)


def _content_items(blocks: list[mcp.types.ContentBlock]) -> Iterator[InterleavedContentItem]:
    """MCP content blocks as the stack's interleaved content: text and images pass through, resources
    become text, what the stack cannot carry (audio, binary resources) becomes a short note."""
    from mcp.types import (
        AudioContent,
        BlobResourceContents,
        EmbeddedResource,
        ImageContent,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )

    for block in blocks:
        if isinstance(block, TextContent):
            yield TextContentItem(text=block.text)
        elif isinstance(block, ImageContent):
            yield ImageContentItem.model_validate({"type": "image", "image": {"data": block.data}})
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            if isinstance(resource, TextResourceContents):
                yield TextContentItem(text=resource.text)
            elif isinstance(resource, BlobResourceContents):
                mime = resource.mime_type or "application/octet-stream"
                if mime.startswith("image/"):
                    yield ImageContentItem.model_validate({"type": "image", "image": {"data": resource.blob}})
                else:
                    yield TextContentItem(text=f"[binary resource {resource.uri} ({mime}) omitted]")
        elif isinstance(block, ResourceLink):
            yield TextContentItem(text=f"[resource {block.name}: {block.uri}]")
        elif isinstance(block, AudioContent):
            yield TextContentItem(text=f"[audio ({block.mime_type}) omitted]")
        else:
            yield TextContentItem(text=f"[{getattr(block, 'type', 'unknown')} content omitted]")
