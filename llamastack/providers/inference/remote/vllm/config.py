from __future__ import annotations

from typing import ClassVar

from ..openai_compat.config import RemoteEngineConfig


class VLLMConfig(RemoteEngineConfig):
    """A vLLM server (its OpenAI-compatible API)."""

    provider_type: ClassVar[str] = "remote::vllm"
    url: str = "http://localhost:8000"
    url_env: ClassVar[str] = "VLLM_URL"
    key_env: ClassVar[str] = "VLLM_API_TOKEN"
    sampling_extras: ClassVar[dict[str, str]] = {"top_k": "top_k", "repetition_penalty": "repetition_penalty"}
    grammar_field: ClassVar[str | None] = "guided_grammar"
    completion_schema_field: ClassVar[str | None] = "guided_json"
    v1_suffix: ClassVar[bool] = True
