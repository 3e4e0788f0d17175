"""remote::model-context-protocol: tool groups served by MCP servers (SSE or streamable HTTP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import MCPToolRuntimeConfig

if TYPE_CHECKING:
    from .provider import MCPToolRuntime


async def get_provider_impl(config: MCPToolRuntimeConfig, deps: ProviderDeps) -> MCPToolRuntime:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import MCPToolRuntime

    return MCPToolRuntime(config, deps.outbound)


__all__ = ["get_provider_impl"]
