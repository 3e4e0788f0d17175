"""inline::transformers: text and vision (Llama 3.2 Vision) models through Hugging Face transformers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import TransformersConfig

if TYPE_CHECKING:
    from .provider import TransformersInference


async def get_provider_impl(config: TransformersConfig, deps: ProviderDeps) -> TransformersInference:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import TransformersInference  # imports torch lazily: keep it out of CLI start-up

    return TransformersInference(config, deps.outbound)


__all__ = ["get_provider_impl"]
