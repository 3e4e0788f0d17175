"""Settings of an OpenAI-compatible engine; each remote provider is this with its own defaults.

The engine URL comes from the operator's run config, so it is trusted as given: it is not a
client-supplied URL and does not go through the outbound policy (which guards connections opened on
a client's behalf).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from llamastack.stack.secrets import Secret, secret_value


class RemoteEngineConfig(BaseModel):
    url: str = Field(
        default="",
        description="Base URL of the engine's OpenAI-compatible API (e.g. http://host:8000/v1); required.",
    )
    api_key: Secret | None = Field(default=None, description="Bearer key for the engine, if it needs one.")
    timeout_s: float = Field(default=120.0, gt=0, description="Longest wait for an answer (or a token).")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait to connect.")
    max_connections: int = Field(
        default=100,
        ge=1,
        le=10000,
        description=(
            "Connections open to the engine at once (streams hold one each); more requests wait for "
            "one, at most timeout_s, then fail as a connect error (503)."
        ),
    )
    max_retries: int = Field(
        default=2,
        ge=0,
        le=5,
        description=(
            "Retries of a request the engine refused to connect or answered 429/503 (after its "
            "Retry-After, if short); never once an answer has started."
        ),
    )
    stream_usage: bool = Field(
        default=True, description="Ask for token usage at the end of streams (stream_options.include_usage)."
    )
    refresh_models: bool = Field(
        default=False,
        description=(
            "Register the models the engine lists (GET /models) at start, and list them again every "
            "refresh_interval_s: new ones are added, ones it dropped are removed (only those it listed, "
            "never the ones registered by hand). POST /v1/models:refresh does it on demand either way."
        ),
    )
    refresh_interval_s: float = Field(
        default=300.0, ge=1, description="Seconds between two listings of the engine's models."
    )
    allowed_models: list[str] | None = Field(
        default=None,
        description=(
            "The engine's model ids model discovery registers, as shell-style patterns (e.g. "
            "['meta-llama/*', 'text-embedding-3-small']); unset: every model it lists. Models registered "
            "by hand or in the run config are not limited by it."
        ),
    )
    embedding_models: list[str] = Field(
        default_factory=list,
        description=(
            "The engine's model ids (shell-style patterns) that discovery registers as embedding "
            "models. Beyond these, a model the engine's listing calls an embedding model, or whose id "
            "names one (embed, bge, e5, gte, MiniLM, mpnet), is one if it answers an embedding "
            "request; the embedding_dimension is read from that answer."
        ),
    )
    tool_calls: Literal["native", "prompt"] = Field(
        default="native",
        description=(
            "native: tools go to the engine (OpenAI tool calling). prompt: for engines without it, the "
            "stack writes the tools into the prompt (Meta's format for Llama 3.x models, over the raw "
            "completion route) and parses the calls out of the answer."
        ),
    )

    # What differs between engines, fixed per provider type.
    provider_type: ClassVar[str] = "remote::openai-compatible"
    key_env: ClassVar[str] = "OPENAI_COMPATIBLE_API_KEY"
    url_env: ClassVar[str] = "OPENAI_COMPATIBLE_URL"
    # Our sampling knobs outside OpenAI's set -> the engine's name for them (sent in the body).
    sampling_extras: ClassVar[dict[str, str]] = {}
    # The body field taking a GBNF grammar, and one taking a JSON schema for plain completions.
    grammar_field: ClassVar[str | None] = None
    completion_schema_field: ClassVar[str | None] = None
    # How a JSON schema is asked for: OpenAI's json_schema response format, or the older
    # {"type": "json_object", "schema": ...} (llama-cpp-python's server).
    schema_format: ClassVar[str] = "json_schema"
    # Hosted APIs: a request without a key is refused here, not sent.
    requires_key: ClassVar[bool] = False
    # The key a request may bring instead, in X-LlamaStack-Provider-Data (e.g. "together_api_key").
    provider_data_key: ClassVar[str | None] = None
    # The engine serves one model whatever name a request gives (llama.cpp's servers).
    single_model: ClassVar[bool] = False
    # Append /v1 when the configured URL lacks it (engines whose OpenAI routes live there).
    v1_suffix: ClassVar[bool] = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not '{value[:80]}'")
        return value.rstrip("/")

    def base_url(self) -> str:
        if self.v1_suffix and not self.url.endswith("/v1"):
            return f"{self.url}/v1"
        return self.url

    def key(self) -> str | None:
        return secret_value(self.api_key)

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"url": "${env.%s}" % cls.url_env, "api_key": "${env.%s:=}" % cls.key_env}  # noqa: UP031


class OpenAICompatibleConfig(RemoteEngineConfig):
    """Any server speaking OpenAI's chat/completions/embeddings routes at `url`."""

    sampling_extras: ClassVar[dict[str, str]] = {"top_k": "top_k", "repetition_penalty": "repetition_penalty"}
