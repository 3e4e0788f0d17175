"""inline::sentence-transformers: embeddings from a local sentence-transformers model folder."""

from __future__ import annotations

from typing import Any

from .config import SentenceTransformersConfig


async def get_provider_impl(config: SentenceTransformersConfig, deps: dict[Any, Any]) -> Any:
    from .provider import SentenceTransformersInference

    return SentenceTransformersInference(config)
