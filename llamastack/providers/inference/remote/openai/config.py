from __future__ import annotations

from typing import ClassVar

from ..openai_compat.config import RemoteEngineConfig


class OpenAIConfig(RemoteEngineConfig):
    """OpenAI's API."""

    provider_type: ClassVar[str] = "remote::openai"
    url: str = "https://api.openai.com/v1"
    url_env: ClassVar[str] = "OPENAI_BASE_URL"
    key_env: ClassVar[str] = "OPENAI_API_KEY"
    requires_key: ClassVar[bool] = True
    provider_data_key: ClassVar[str | None] = "openai_api_key"
