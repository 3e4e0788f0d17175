"""inline::agents: the agent loop (inference, tools, shields, memory) with sessions kept in sqlite."""

from __future__ import annotations

from typing import Any

from llamastack.stack.datatypes import Api

from .config import LocalAgentsConfig


async def get_provider_impl(config: LocalAgentsConfig, deps: dict[Api, Any]) -> Any:
    from .provider import LocalAgents

    impl = LocalAgents(
        config,
        inference=deps[Api.inference],
        tool_runtime=deps[Api.tool_runtime],
        safety=deps.get(Api.safety),
        vector_io=deps.get(Api.vector_io),
    )
    await impl.initialize()
    return impl
