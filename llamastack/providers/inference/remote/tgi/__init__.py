"""remote::tgi: A Text Generation Inference server, through its OpenAI-compatible /v1 routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import TGIConfig

if TYPE_CHECKING:
    from ..openai_compat.adapter import OpenAICompatInference


async def get_provider_impl(config: TGIConfig, deps: ProviderDeps) -> OpenAICompatInference:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from ..openai_compat.adapter import OpenAICompatInference

    return OpenAICompatInference(config)


__all__ = ["get_provider_impl"]
