"""remote::openai-compatible: any server speaking OpenAI's chat, completions and embeddings routes;
also the adapter every other remote inference provider is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import RemoteEngineConfig

if TYPE_CHECKING:
    from .adapter import OpenAICompatInference


async def get_provider_impl(config: RemoteEngineConfig, deps: ProviderDeps) -> OpenAICompatInference:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .adapter import OpenAICompatInference  # loaded only when a remote engine is configured

    return OpenAICompatInference(config)


__all__ = ["get_provider_impl"]
