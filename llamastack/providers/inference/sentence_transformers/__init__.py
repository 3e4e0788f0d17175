"""inline::sentence-transformers: embeddings from a local sentence-transformers model folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import SentenceTransformersConfig

if TYPE_CHECKING:
    from .provider import SentenceTransformersInference


async def get_provider_impl(
    config: SentenceTransformersConfig, deps: ProviderDeps
) -> SentenceTransformersInference:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import SentenceTransformersInference

    return SentenceTransformersInference(config)


__all__ = ["get_provider_impl"]
