"""remote::model-context-protocol: tool groups served by MCP servers (SSE or streamable HTTP)."""

from __future__ import annotations

from typing import Any

from llamastack.stack.datatypes import ProviderDeps

from .config import MCPToolRuntimeConfig


async def get_provider_impl(config: MCPToolRuntimeConfig, deps: dict[Any, Any]) -> Any:
    from .provider import MCPToolRuntime

    return MCPToolRuntime(config, ProviderDeps.outbound_of(deps))
