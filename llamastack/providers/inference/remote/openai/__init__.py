"""remote::openai: OpenAI's API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps

from .config import OpenAIConfig

if TYPE_CHECKING:
    from ..openai_compat.adapter import OpenAICompatInference


async def get_provider_impl(config: OpenAIConfig, deps: ProviderDeps) -> OpenAICompatInference:
    from ..openai_compat.adapter import OpenAICompatInference

    return OpenAICompatInference(config)


__all__ = ["get_provider_impl"]
