"""inline::chromadb (embedded, on disk) and remote::chromadb (a chroma server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import ChromaInlineConfig, ChromaRemoteConfig

if TYPE_CHECKING:
    from .provider import ChromaVectorIO


async def get_provider_impl(
    config: ChromaInlineConfig | ChromaRemoteConfig, deps: ProviderDeps
) -> ChromaVectorIO:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import ChromaVectorIO

    impl = ChromaVectorIO(config)
    await impl.initialize()
    return impl


__all__ = ["get_provider_impl"]
