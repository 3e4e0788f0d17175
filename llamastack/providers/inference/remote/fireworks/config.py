from __future__ import annotations

from typing import ClassVar

from ..openai_compat.config import RemoteEngineConfig


class FireworksConfig(RemoteEngineConfig):
    """Fireworks AI's OpenAI-compatible API."""

    provider_type: ClassVar[str] = "remote::fireworks"
    url: str = "https://api.fireworks.ai/inference/v1"
    url_env: ClassVar[str] = "FIREWORKS_URL"
    key_env: ClassVar[str] = "FIREWORKS_API_KEY"
    sampling_extras: ClassVar[dict[str, str]] = {"top_k": "top_k"}
    requires_key: ClassVar[bool] = True
    provider_data_key: ClassVar[str | None] = "fireworks_api_key"
