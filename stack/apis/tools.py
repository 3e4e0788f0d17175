"""ToolGroups, Tools and the ToolRuntime: what tools exist, and running one."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .common import URL, InterleavedContent, Resource, ResourceType


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
