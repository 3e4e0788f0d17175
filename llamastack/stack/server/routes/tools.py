"""ToolGroups, Tools and ToolRuntime routes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...apis.tools import (
    InvokeToolRequest,
    ListToolDefsResponse,
    ListToolGroupsResponse,
    ListToolsResponse,
    RegisterToolGroupRequest,
    Tool,
    ToolGroup,
    ToolInvocationResult,
)
from ..deps import json_response, tool_groups_api, tool_runtime_api
from ..route import StackRoute

router = APIRouter(route_class=StackRoute)

_groups = tool_groups_api
_runtime = tool_runtime_api


@router.get(
    "/v1/toolgroups", response_model=ListToolGroupsResponse, tags=["ToolGroups"], summary="List tool groups."
)
async def list_tool_groups(request: Request) -> Response:
    return json_response(await _groups(request).list_tool_groups())


@router.post("/v1/toolgroups", tags=["ToolGroups"], summary="Register a tool group.")
async def register_tool_group(request: Request, body: RegisterToolGroupRequest) -> None:
    await _groups(request).register_tool_group(body)


@router.get(
    "/v1/toolgroups/{toolgroup_id:path}",
    response_model=ToolGroup,
    tags=["ToolGroups"],
    summary="Get a tool group.",
)
async def get_tool_group(request: Request, toolgroup_id: str) -> Response:
    return json_response(await _groups(request).get_tool_group(toolgroup_id))


@router.delete("/v1/toolgroups/{toolgroup_id:path}", tags=["ToolGroups"], summary="Unregister a tool group.")
async def unregister_toolgroup(request: Request, toolgroup_id: str) -> None:
    await _groups(request).unregister_toolgroup(toolgroup_id)


@router.get("/v1/tools", response_model=ListToolsResponse, tags=["ToolGroups"], summary="List tools.")
async def list_tools(request: Request, toolgroup_id: str | None = None) -> Response:
    return json_response(await _groups(request).list_tools(toolgroup_id))


@router.get(
    "/v1/tools/{tool_name:path}", response_model=Tool, tags=["ToolGroups"], summary="Get a tool by name."
)
async def get_tool(request: Request, tool_name: str) -> Response:
    return json_response(await _groups(request).get_tool(tool_name))


@router.get(
    "/v1/tool-runtime/list-tools",
    response_model=ListToolDefsResponse,
    tags=["ToolRuntime"],
    summary="List all tools in the runtime.",
)
async def list_runtime_tools(request: Request, tool_group_id: str | None = None) -> Response:
    return json_response(await _runtime(request).list_runtime_tools(tool_group_id))


@router.post(
    "/v1/tool-runtime/invoke",
    response_model=ToolInvocationResult,
    tags=["ToolRuntime"],
    summary="Run a tool with the given arguments.",
)
async def invoke_tool(request: Request, body: InvokeToolRequest) -> Response:
    # X-LlamaStack-Provider-Data reaches the tool through stack/provider_data.py.
    result = await _runtime(request).invoke_tool(body.tool_name, body.kwargs)
    return json_response(result)
