"""inline::llama-cpp: GGUF models on CPU through llama.cpp."""

from __future__ import annotations

from typing import Any

from .config import LlamaCppConfig


async def get_provider_impl(config: LlamaCppConfig, deps: dict[Any, Any]) -> Any:
    from .provider import LlamaCppInference  # imports llama_cpp: keep it out of CLI start-up

    return LlamaCppInference(config)
