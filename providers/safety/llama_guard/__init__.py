"""inline::llama-guard: Llama Guard 3 shields, backed by any llm model the stack serves."""

from __future__ import annotations

from typing import Any

from llamastack.stack.datatypes import Api

from .config import LlamaGuardConfig


async def get_provider_impl(config: LlamaGuardConfig, deps: dict[Api, Any]) -> Any:
    from .provider import LlamaGuardSafety

    return LlamaGuardSafety(config, deps[Api.inference])
