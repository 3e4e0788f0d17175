from __future__ import annotations

from typing import ClassVar

from ..openai_compat.config import RemoteEngineConfig


class TogetherConfig(RemoteEngineConfig):
    """Together AI's OpenAI-compatible API."""

    provider_type: ClassVar[str] = "remote::together"
    url: str = "https://api.together.xyz/v1"
    url_env: ClassVar[str] = "TOGETHER_URL"
    key_env: ClassVar[str] = "TOGETHER_API_KEY"
    sampling_extras: ClassVar[dict[str, str]] = {"top_k": "top_k", "repetition_penalty": "repetition_penalty"}
    requires_key: ClassVar[bool] = True
    provider_data_key: ClassVar[str | None] = "together_api_key"
