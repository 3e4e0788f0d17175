"""inline::rag-runtime: documents into vector dbs (load, chunk, embed, store) and context back out."""

from __future__ import annotations

from typing import Any

from llamastack.stack.datatypes import Api, ProviderDeps

from .config import RagRuntimeConfig


async def get_provider_impl(config: RagRuntimeConfig, deps: dict[Api, Any]) -> Any:
    from .provider import RagRuntime

    return RagRuntime(
        config,
        vector_io=deps[Api.vector_io],
        inference=deps[Api.inference],
        outbound=ProviderDeps.outbound_of(deps),
    )
