"""Routes inference calls to the provider that owns the model, after checking the model's kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from ..apis.inference.core import (
    ChatRequest,
    CompletionRequest,
    EmbeddingResult,
    GenerationChunk,
    GenerationResult,
    InferenceProvider,
)
from ..apis.models import Model, ModelType
from ..errors import BadRequestError
from .models import ModelsTable


class InferenceRouter:
    def __init__(self, models: ModelsTable) -> None:
        self.models = models

    def _resolve(self, model_id: str, kind: ModelType) -> tuple[Model, InferenceProvider]:
        model = self.models.get(model_id)
        if model.model_type != kind:
            if kind == ModelType.embedding:
                raise BadRequestError(
                    f"Model '{model_id}' is an {model.model_type.value} model, not an embedding model. "
                    "List embedding models with GET /v1/models (model_type: embedding)."
                )
            raise BadRequestError(
                f"Model '{model_id}' is an embedding model; it cannot generate text. "
                "Use it with /v1/inference/embeddings or /v1/openai/v1/embeddings."
            )
        return model, self.models.owner(model)

    async def chat(self, model_id: str, request: ChatRequest) -> GenerationResult:
        model, provider = self._resolve(model_id, ModelType.llm)
        return await provider.chat(model, request)

    def chat_stream(self, model_id: str, request: ChatRequest) -> AsyncIterator[GenerationChunk]:
        model, provider = self._resolve(model_id, ModelType.llm)
        return provider.chat_stream(model, request)

    async def complete(self, model_id: str, request: CompletionRequest) -> GenerationResult:
        model, provider = self._resolve(model_id, ModelType.llm)
        return await provider.complete(model, request)

    def complete_stream(self, model_id: str, request: CompletionRequest) -> AsyncIterator[GenerationChunk]:
        model, provider = self._resolve(model_id, ModelType.llm)
        return provider.complete_stream(model, request)

    async def embed(
        self,
        model_id: str,
        texts: list[str],
        *,
        truncate: Literal["none", "start", "end"] | None = None,
        dimensions: int | None = None,
    ) -> EmbeddingResult:
        model, provider = self._resolve(model_id, ModelType.embedding)
        native = model.metadata.get("embedding_dimension")
        if dimensions is not None and dimensions != native:
            raise BadRequestError(
                f"Model '{model_id}' produces {native}-dimensional embeddings and cannot "
                f"produce {dimensions}; omit the dimensions / output_dimension field."
            )
        return await provider.embed(model, texts, truncate=truncate)
