"""inline::rag-runtime: documents into vector dbs (load, chunk, embed, store) and context back out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import Api, ProviderDeps, required
from llamastack.stack.library_imports import library_imports

from .config import RagRuntimeConfig

if TYPE_CHECKING:
    from .provider import RagRuntime


async def get_provider_impl(config: RagRuntimeConfig, deps: ProviderDeps) -> RagRuntime:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import RagRuntime

    return RagRuntime(
        config,
        vector_io=required(deps.vector_io, Api.vector_io),
        vector_dbs=required(deps.vector_dbs, Api.vector_io),
        inference=required(deps.inference, Api.inference),
        outbound=deps.outbound,
    )


__all__ = ["get_provider_impl"]
