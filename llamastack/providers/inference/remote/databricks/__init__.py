"""remote::databricks: Databricks model serving endpoints (OpenAI-compatible, at <host>/serving-endpoints)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps

from .config import DatabricksConfig

if TYPE_CHECKING:
    from ..openai_compat.adapter import OpenAICompatInference


async def get_provider_impl(config: DatabricksConfig, deps: ProviderDeps) -> OpenAICompatInference:
    from ..openai_compat.adapter import OpenAICompatInference

    return OpenAICompatInference(config)


__all__ = ["get_provider_impl"]
