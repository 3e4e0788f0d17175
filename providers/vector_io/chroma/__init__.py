"""inline::chromadb (embedded, on disk) and remote::chromadb (a chroma server)."""

from __future__ import annotations

from typing import Any

from .config import ChromaInlineConfig, ChromaRemoteConfig


async def get_provider_impl(config: ChromaInlineConfig | ChromaRemoteConfig, deps: dict[Any, Any]) -> Any:
    from .provider import ChromaVectorIO

    impl = ChromaVectorIO(config)
    await impl.initialize()
    return impl
