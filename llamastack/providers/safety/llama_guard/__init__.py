"""inline::llama-guard: Llama Guard 3 shields, backed by any llm model the stack serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import Api, ProviderDeps, required
from llamastack.stack.library_imports import library_imports

from .config import LlamaGuardConfig

if TYPE_CHECKING:
    from .provider import LlamaGuardSafety


async def get_provider_impl(config: LlamaGuardConfig, deps: ProviderDeps) -> LlamaGuardSafety:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import LlamaGuardSafety

    return LlamaGuardSafety(
        config, inference=required(deps.inference, Api.inference), models=required(deps.models, Api.inference)
    )


__all__ = ["get_provider_impl"]
