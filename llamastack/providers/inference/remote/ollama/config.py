from __future__ import annotations

from typing import ClassVar

from ..openai_compat.config import RemoteEngineConfig


class OllamaConfig(RemoteEngineConfig):
    """An Ollama server, through its OpenAI-compatible /v1 routes."""

    provider_type: ClassVar[str] = "remote::ollama"
    url: str = "http://localhost:11434"
    url_env: ClassVar[str] = "OLLAMA_URL"
    key_env: ClassVar[str] = "OLLAMA_API_KEY"
    v1_suffix: ClassVar[bool] = True
