"""The inline::sentence-transformers embeddings provider."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from llamastack.stack.apis.inference.core import (
    ChatRequest,
    CompletionRequest,
    EmbeddingResult,
    GenerationChunk,
    GenerationResult,
)
from llamastack.stack.apis.models import Model, ModelType
from llamastack.stack.errors import BadRequestError, UnsupportedError
from llamastack.stack.library_imports import library_imports
from llamastack.stack.model_paths import resolve_model_path

from ...utils.library_loading import hf_loading
from .config import SentenceTransformersConfig

log = logging.getLogger(__name__)


class _TorchEncoder:
    """The sentence-transformers library itself, for architectures the numpy encoder lacks."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        with hf_loading:  # transformers' lazy imports are not thread-safe: loads take turns
            self._load(folder, device)

    def _load(self, folder: Path, device: str) -> None:
        try:
            with library_imports:
                from sentence_transformers import SentenceTransformer
        except ImportError:
            raise BadRequestError(
                "The torch backend needs sentence-transformers: pip install 'llamastack[torch]'."
            ) from None
        if device == "auto" or (device.startswith("cuda") and not _cuda_available()):
            device = "cuda" if _cuda_available() else "cpu"
        self.model = SentenceTransformer(str(folder), device=device)
        dimension, max_tokens = self.model.get_sentence_embedding_dimension(), self.model.max_seq_length
        if dimension is None or max_tokens is None:
            raise BadRequestError(f"{folder} does not say its embedding dimension or maximum length.")
        self.dimension = int(dimension)
        self.max_tokens = int(max_tokens)

    def encode(self, texts: list[str], *, batch_size: int, truncation: Any = None) -> tuple[Any, int]:
        if truncation == "start":
            raise UnsupportedError("text_truncation 'start' is not supported by the torch backend.")
        tokens = sum(len(ids) for ids in self.model.tokenizer(texts)["input_ids"])
        return self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True), tokens


def _cuda_available() -> bool:
    with library_imports:
        import torch

    return bool(torch.cuda.is_available())


_EMBEDDINGS_ONLY = "inline::sentence-transformers serves embeddings only."


class SentenceTransformersInference:
    supported_model_types = (ModelType.embedding,)

    def __init__(self, config: SentenceTransformersConfig) -> None:
        self.config = config
        self._encoders: dict[str, Any] = {}

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def shutdown(self) -> None:
        self._encoders.clear()

    def _load(self, folder: Path) -> Any:
        backend = self.config.backend
        if self.config.quantize == "int8" and backend not in ("auto", "onnx"):
            raise BadRequestError(f"quantize: int8 needs the onnx backend (backend is '{backend}').")
        if backend in ("auto", "onnx"):
            with library_imports:  # these modules import numpy
                from .numpy_bert import UnsupportedFolder
                from .onnx_bert import OnnxBertEncoder, onnx_available

            if not onnx_available():
                if backend == "onnx" or self.config.quantize == "int8":
                    raise BadRequestError(
                        "The onnx embedding backend needs onnxruntime and onnx: "
                        "pip install 'llamastack[local]'."
                    )
            else:
                cache = Path(self.config.cache_dir).expanduser() if self.config.cache_dir else None
                try:
                    return OnnxBertEncoder(folder, quantize=self.config.quantize, cache_dir=cache)
                except UnsupportedFolder as exc:
                    if backend == "onnx" or self.config.quantize == "int8":
                        raise BadRequestError(f"The onnx backend cannot run '{folder}': {exc}.") from None
                    log.info("Not using the onnx backend for %s (%s)", folder, exc)
        if backend in ("auto", "numpy"):
            with library_imports:
                from .numpy_bert import NumpyBertEncoder, UnsupportedFolder

            try:
                return NumpyBertEncoder(folder)
            except UnsupportedFolder as exc:
                if backend == "numpy":
                    raise BadRequestError(f"The numpy backend cannot run '{folder}': {exc}.") from None
                log.info("Using the torch backend for %s (%s)", folder, exc)
        if not (folder / "config.json").is_file():
            raise BadRequestError(
                f"'{folder}' is not an embedding model folder (it has no config.json); point "
                "provider_model_id at a sentence-transformers or BERT model directory."
            )
        try:
            return _TorchEncoder(folder, self.config.device)
        except BadRequestError:
            raise
        except Exception as exc:  # transformers raises many kinds on folders it cannot load
            raise BadRequestError(
                f"'{folder}' could not be loaded as an embedding model: {type(exc).__name__}: {exc}"
            ) from None

    async def register_model(self, model: Model) -> Model:
        if model.model_type != ModelType.embedding:
            raise BadRequestError("inline::sentence-transformers serves embedding models only.")
        folder = resolve_model_path(model.provider_resource_id or model.identifier, expect_dir=True)
        encoder = await asyncio.to_thread(self._load, folder)
        declared = model.metadata.get("embedding_dimension")
        if declared is not None and int(declared) != encoder.dimension:
            raise BadRequestError(
                f"metadata.embedding_dimension is {declared}, but the model in '{folder}' "
                f"produces {encoder.dimension}-dimensional embeddings."
            )
        self._encoders[model.identifier] = encoder
        meta = {
            **model.metadata,
            "embedding_dimension": encoder.dimension,
            "context_length": encoder.max_tokens,
        }
        return model.model_copy(update={"metadata": meta})

    async def unregister_model(self, model: Model) -> None:
        self._encoders.pop(model.identifier, None)

    async def embed(
        self, model: Model, texts: list[str], *, truncate: Literal["none", "start", "end"] | None = None
    ) -> EmbeddingResult:
        from .numpy_bert import TooLongError

        encoder = self._encoders[model.identifier]

        def encode() -> tuple[list[list[float]], int]:
            vectors, tokens = encoder.encode(texts, batch_size=self.config.batch_size, truncation=truncate)
            return vectors.tolist(), tokens  # in the worker too: the event loop only gets floats

        try:
            embeddings, tokens = await asyncio.to_thread(encode)
        except TooLongError as exc:
            raise BadRequestError(f"{exc}; set text_truncation to 'end' or 'start', or shorten it.") from None
        return EmbeddingResult(embeddings=embeddings, prompt_tokens=tokens)

    # Only embedding models are registered here, so the router never sends generation; these say so
    # if a caller ever does.
    async def chat(self, model: Model, request: ChatRequest) -> GenerationResult:
        raise UnsupportedError(_EMBEDDINGS_ONLY)

    async def complete(self, model: Model, request: CompletionRequest) -> GenerationResult:
        raise UnsupportedError(_EMBEDDINGS_ONLY)

    async def chat_stream(self, model: Model, request: ChatRequest) -> AsyncIterator[GenerationChunk]:
        raise UnsupportedError(_EMBEDDINGS_ONLY)
        yield  # an async generator, like every provider's streams

    async def complete_stream(
        self, model: Model, request: CompletionRequest
    ) -> AsyncIterator[GenerationChunk]:
        raise UnsupportedError(_EMBEDDINGS_ONLY)
        yield
