from __future__ import annotations

from typing import ClassVar

from ..openai_compat.config import RemoteEngineConfig


class TGIConfig(RemoteEngineConfig):
    """A Text Generation Inference server, through its OpenAI-compatible /v1 routes."""

    provider_type: ClassVar[str] = "remote::tgi"
    url: str = "http://localhost:8080"
    url_env: ClassVar[str] = "TGI_URL"
    key_env: ClassVar[str] = "TGI_API_TOKEN"
    # TGI serves the one model it was started with, under any name.
    single_model: ClassVar[bool] = True
    v1_suffix: ClassVar[bool] = True
