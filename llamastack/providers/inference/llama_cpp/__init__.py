"""inline::llama-cpp: GGUF models on CPU through llama.cpp."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import LlamaCppConfig

if TYPE_CHECKING:
    from .provider import LlamaCppInference


async def get_provider_impl(config: LlamaCppConfig, deps: ProviderDeps) -> LlamaCppInference:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import LlamaCppInference  # imports llama_cpp: keep it out of CLI start-up

    return LlamaCppInference(config)


__all__ = ["get_provider_impl"]
