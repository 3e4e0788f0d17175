"""inline::agents: the agent loop (inference, tools, shields, memory); agents, sessions and turns are
kept in the stack's database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import LocalAgentsConfig

if TYPE_CHECKING:
    from .provider import LocalAgents


async def get_provider_impl(config: LocalAgentsConfig, deps: ProviderDeps) -> LocalAgents:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import LocalAgents

    impl = LocalAgents(config, deps)
    await impl.initialize()
    return impl


__all__ = ["get_provider_impl"]
