"""ToolGroups (which tool groups exist, and which provider serves each), Tools, and the ToolRuntime
that runs a tool by name in the group that has it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..apis.common import URL
from ..apis.tools import (
    ListToolDefsResponse,
    ListToolGroupsResponse,
    ListToolsResponse,
    RegisterToolGroupRequest,
    Tool,
    ToolDef,
    ToolGroup,
    ToolInvocationResult,
    ToolRuntimeProvider,
)
from ..errors import (
    BadRequestError,
    ProviderNotFoundError,
    ToolGroupNotFoundError,
    ToolNotFoundError,
    ToolNotInGroupError,
    UpstreamError,
)
from ..provider_data import current as current_provider_data
from ..storage.kvstore import KVStore
from .table import ResourceTable

log = logging.getLogger(__name__)


async def _register(provider: ToolRuntimeProvider, group: ToolGroup) -> ToolGroup:
    return await provider.register_toolgroup(group)


async def _unregister(provider: ToolRuntimeProvider, group: ToolGroup) -> None:
    await provider.unregister_toolgroup(group)


def _as_tool(group: ToolGroup, tool: ToolDef) -> Tool:
    return Tool(
        identifier=tool.name,
        provider_id=group.provider_id,
        provider_resource_id=tool.name,
        toolgroup_id=group.identifier,
        description=tool.description or "",
        parameters=tool.parameters or [],
        metadata=tool.metadata,
    )


class ToolRuntimeRouter:
    def __init__(
        self,
        store: KVStore,
        providers: dict[str, ToolRuntimeProvider],
        *,
        mcp_provider_id: str | None = None,
    ) -> None:
        self.providers = providers
        # The provider that serves MCP servers named by URL (MCPEndpoints), if the config has one.
        self.mcp_provider_id = mcp_provider_id
        self.groups: ResourceTable[ToolGroup, ToolRuntimeProvider] = ResourceTable(
            kind="tool_group",
            resource_class=ToolGroup,
            store=store,
            owners=providers,
            register_hook=_register,
            unregister_hook=_unregister,
            not_found=ToolGroupNotFoundError,
        )
        self._tools: dict[str, dict[str, Tool]] = {}  # toolgroup id -> tool name -> tool

    # --- tool groups ---------------------------------------------------------------------------

    def build(self, request: RegisterToolGroupRequest) -> ToolGroup:
        if request.provider_id not in self.providers:
            raise ProviderNotFoundError(request.provider_id, list(self.providers))
        return ToolGroup(
            identifier=request.toolgroup_id,
            provider_id=request.provider_id,
            provider_resource_id=request.toolgroup_id,
            mcp_endpoint=request.mcp_endpoint,
            args=request.args,
        )

    async def register_tool_group(self, request: RegisterToolGroupRequest) -> ToolGroup:
        group = await self.groups.register(self.build(request))
        self._tools.pop(group.identifier, None)
        return group

    async def unregister_toolgroup(self, toolgroup_id: str) -> None:
        await self.groups.unregister(toolgroup_id)
        self._tools.pop(toolgroup_id, None)

    async def list_tool_groups(self) -> ListToolGroupsResponse:
        return ListToolGroupsResponse(data=self.groups.list())

    async def get_tool_group(self, toolgroup_id: str) -> ToolGroup:
        return self.groups.get(toolgroup_id)

    async def find_tool_group(self, toolgroup_id: str) -> ToolGroup | None:
        return self.groups.find(toolgroup_id)

    def split_toolgroup_name(self, name: str) -> tuple[str, str | None]:
        """``group/tool`` names one tool of a group (``builtin::rag/knowledge_search``): (group id, tool
        name or None). A registered group whose own id holds a '/' is taken whole."""
        if "/" not in name or self.groups.find(name) is not None:
            return name, None
        group_id, tool_name = name.rsplit("/", 1)
        return group_id, tool_name or None

    # --- tools ---------------------------------------------------------------------------------

    async def _group_tools(self, group: ToolGroup, *, refresh: bool = False) -> dict[str, Tool]:
        if refresh or group.identifier not in self._tools:
            defs = await self.groups.owner(group).list_tools(group)
            self._tools[group.identifier] = {d.name: _as_tool(group, d) for d in defs}
        return self._tools[group.identifier]

    async def _tools_or_none(self, group: ToolGroup, *, refresh: bool = False) -> dict[str, Tool]:
        """A group's tools; a group whose server is down is skipped so the others keep working."""
        try:
            return await self._group_tools(group, refresh=refresh)
        except UpstreamError as exc:
            log.warning("Tool group '%s' is unavailable: %s", group.identifier, exc.detail)
            return {}

    async def list_tools(self, toolgroup_id: str | None = None) -> ListToolsResponse:
        if toolgroup_id:
            group_id, tool_name = self.split_toolgroup_name(toolgroup_id)
            tools = await self._group_tools(self.groups.get(group_id))
            if tool_name is not None:
                if tool_name not in tools:
                    raise ToolNotInGroupError(group_id, tool_name, list(tools))
                tools = {tool_name: tools[tool_name]}
            found = [tools]
        else:
            found = await asyncio.gather(*(self._tools_or_none(g) for g in self.groups.list()))
        return ListToolsResponse(data=[t for tools in found for t in tools.values()])

    async def list_runtime_tools(self, toolgroup_id: str | None) -> ListToolDefsResponse:
        tools = (await self.list_tools(toolgroup_id)).data
        return ListToolDefsResponse(
            data=[
                ToolDef(
                    name=t.identifier, description=t.description, parameters=t.parameters, metadata=t.metadata
                )
                for t in tools
            ]
        )

    async def find_tool(self, tool_name: str) -> tuple[ToolGroup, Tool]:
        for refresh in (False, True):  # a remote group may have gained the tool since it was listed
            for group in self.groups.list():
                tools = await self._tools_or_none(group, refresh=refresh)
                if tool_name in tools:
                    return group, tools[tool_name]
        raise ToolNotFoundError(tool_name)

    async def get_tool(self, tool_name: str) -> Tool:
        return (await self.find_tool(tool_name))[1]

    async def invoke_tool(
        self, tool_name: str, kwargs: dict[str, Any], provider_data: dict[str, Any] | None = None
    ) -> ToolInvocationResult:
        group, tool = await self.find_tool(tool_name)
        missing = [
            p.name for p in tool.parameters if p.required and p.name not in kwargs and p.default is None
        ]
        if missing:
            raise BadRequestError(f"Tool '{tool_name}' needs the argument(s) {', '.join(missing)}.")
        if provider_data is None:  # this request's X-LlamaStack-Provider-Data, for any caller (agents too)
            provider_data = current_provider_data() or None
        return await self.groups.owner(group).invoke(tool_name, kwargs, group, provider_data)

    # --- MCP servers named by URL (MCPEndpoints) ---------------------------------------------------

    def _endpoint_group(self, server_url: str) -> tuple[ToolGroup, ToolRuntimeProvider]:
        if self.mcp_provider_id is None:
            raise BadRequestError(
                "This server has no MCP tool runtime provider, so mcp tools cannot be used; add "
                "remote::model-context-protocol to the run config's tool_runtime providers."
            )
        group = ToolGroup(
            identifier=f"mcp::{server_url}",
            provider_id=self.mcp_provider_id,
            provider_resource_id=server_url,
            mcp_endpoint=URL(uri=server_url),
        )
        return group, self.providers[self.mcp_provider_id]

    @staticmethod
    def _endpoint_data(server_url: str, headers: dict[str, str]) -> dict[str, Any]:
        data = dict(current_provider_data() or {})
        data["mcp_headers"] = {server_url: headers}
        return data

    async def list_endpoint_tools(self, server_url: str, headers: dict[str, str]) -> list[ToolDef]:
        group, provider = self._endpoint_group(server_url)
        # The MCP provider takes provider data (the request's headers) when listing, too.
        lister: Any = provider.list_tools
        defs: list[ToolDef] = await lister(group, self._endpoint_data(server_url, headers))
        return defs

    async def invoke_endpoint_tool(
        self, server_url: str, headers: dict[str, str], tool_name: str, kwargs: dict[str, Any]
    ) -> ToolInvocationResult:
        group, provider = self._endpoint_group(server_url)
        return await provider.invoke(tool_name, kwargs, group, self._endpoint_data(server_url, headers))
