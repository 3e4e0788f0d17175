from __future__ import annotations

from typing import ClassVar

from ..openai_compat.config import RemoteEngineConfig


class LlamaCppServerConfig(RemoteEngineConfig):
    """llama.cpp's OpenAI-compatible server (llama-server, or llama-cpp-python's llama_cpp.server)."""

    provider_type: ClassVar[str] = "remote::llama-cpp-server"
    url: str = "http://localhost:8080"
    url_env: ClassVar[str] = "LLAMA_CPP_SERVER_URL"
    key_env: ClassVar[str] = "LLAMA_CPP_SERVER_API_KEY"
    sampling_extras: ClassVar[dict[str, str]] = {"top_k": "top_k", "repetition_penalty": "repeat_penalty"}
    grammar_field: ClassVar[str | None] = "grammar"
    schema_format: ClassVar[str] = "json_object_schema"
    single_model: ClassVar[bool] = True
    v1_suffix: ClassVar[bool] = True
