"""ToolGroups, Tools and the ToolRuntime: what tools exist, and running one."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from .common import URL, InterleavedContent, Resource, ResourceType
from .vector_io import RAGDocument, RAGQueryConfig, RAGQueryResult


class ToolParameter(BaseModel):
    name: str
    parameter_type: str
    description: str = ""
    required: bool = True
    default: Any = None


class ToolDef(BaseModel):
    name: str
    description: str | None = None
    parameters: list[ToolParameter] | None = None
    metadata: dict[str, Any] | None = None


class ToolGroup(Resource):
    type: Literal[ResourceType.tool_group] = ResourceType.tool_group
    mcp_endpoint: URL | None = None
    args: dict[str, Any] | None = None


class Tool(Resource):
    type: Literal[ResourceType.tool] = ResourceType.tool
    toolgroup_id: str
    description: str = ""
    parameters: list[ToolParameter] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None


class ListToolGroupsResponse(BaseModel):
    data: list[ToolGroup]


class ListToolsResponse(BaseModel):
    data: list[Tool]


class ListToolDefsResponse(BaseModel):
    data: list[ToolDef]


class RegisterToolGroupRequest(BaseModel):
    toolgroup_id: str = Field(min_length=1)
    provider_id: str
    mcp_endpoint: URL | None = None
    args: dict[str, Any] | None = None


class InvokeToolRequest(BaseModel):
    tool_name: str = Field(min_length=1)
    kwargs: dict[str, Any]


class ToolInvocationResult(BaseModel):
    content: InterleavedContent | None = None
    error_message: str | None = None
    error_code: int | None = None
    metadata: dict[str, Any] | None = None


class ToolGroups(Protocol):
    """The ToolGroups API: which tool groups exist, which provider serves each, and their tools."""

    async def list_tool_groups(self) -> ListToolGroupsResponse: ...

    async def get_tool_group(self, toolgroup_id: str) -> ToolGroup: ...

    async def find_tool_group(self, toolgroup_id: str) -> ToolGroup | None:
        """The group, or None where get_tool_group would answer 404."""
        ...

    async def register_tool_group(self, request: RegisterToolGroupRequest) -> ToolGroup: ...

    async def unregister_toolgroup(self, toolgroup_id: str) -> None: ...

    async def list_tools(self, toolgroup_id: str | None = None) -> ListToolsResponse:
        """All tools, or one group's; ``group/tool`` names one tool of a group."""
        ...

    async def get_tool(self, tool_name: str) -> Tool: ...

    def split_toolgroup_name(self, name: str) -> tuple[str, str | None]:
        """``group/tool`` -> (group id, tool name); a plain group id -> (id, None)."""
        ...


class ToolRuntime(Protocol):
    """The ToolRuntime API: runs a tool by name, in the group that has it."""

    async def list_runtime_tools(self, toolgroup_id: str | None) -> ListToolDefsResponse: ...

    async def invoke_tool(
        self, tool_name: str, kwargs: dict[str, Any], provider_data: dict[str, Any] | None = None
    ) -> ToolInvocationResult: ...


class MCPEndpoints(Protocol):
    """MCP servers named by URL in a request (the Responses API's ``mcp`` tools) rather than
    registered as tool groups; served by the tool runtime's MCP provider, under the outbound policy."""

    async def list_endpoint_tools(self, server_url: str, headers: dict[str, str]) -> list[ToolDef]: ...

    async def invoke_endpoint_tool(
        self, server_url: str, headers: dict[str, str], tool_name: str, kwargs: dict[str, Any]
    ) -> ToolInvocationResult: ...


class RAGToolRuntime(Protocol):
    """The RAG tool (/v1/tool-runtime/rag-tool/*): documents into vector dbs, and context back out.
    A tool_runtime provider that serves it says so in its registry entry (`serves_rag_tool`)."""

    async def insert(
        self, documents: list[RAGDocument], vector_db_id: str, chunk_size_in_tokens: int
    ) -> None: ...

    async def query(
        self, content: InterleavedContent, vector_db_ids: list[str], config: RAGQueryConfig | None
    ) -> RAGQueryResult: ...


class ToolRuntimeProvider(Protocol):
    """What a tool_runtime provider implements.

    A provider serves tool groups (``builtin::rag``, ``builtin::code_interpreter``, ``mcp::docs``...):
    it checks a group when it is registered, lists the group's tools, and runs them. ``provider_data``
    is the per-request ``X-LlamaStack-Provider-Data`` header (e.g. API keys), already parsed.
    """

    async def register_toolgroup(self, group: ToolGroup) -> ToolGroup: ...

    async def unregister_toolgroup(self, group: ToolGroup) -> None: ...

    async def list_tools(self, group: ToolGroup) -> list[ToolDef]: ...

    async def invoke(
        self, tool_name: str, kwargs: dict[str, Any], group: ToolGroup, provider_data: dict[str, Any] | None
    ) -> ToolInvocationResult:
        """Runs one tool. A tool that fails returns error_message/error_code (the agent shows the model
        the error); only a client mistake (unknown tool, bad arguments) raises a typed 4xx error."""
        ...
