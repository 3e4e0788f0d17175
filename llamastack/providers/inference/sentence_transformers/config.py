from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The per-user cache of derived model files, shared by every state dir (the run configs' default):
    EMBEDDING_CACHE_DIR, else $XDG_CACHE_HOME/llamastack/embeddings, else ~/.cache/llamastack/embeddings."""
    env = os.environ if env is None else env
    if env.get("EMBEDDING_CACHE_DIR"):
        return Path(env["EMBEDDING_CACHE_DIR"]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "llamastack" / "embeddings"


class SentenceTransformersConfig(BaseModel):
    backend: Literal["auto", "onnx", "numpy", "torch"] = Field(
        default="auto",
        description=(
            "onnx: the BERT graph on onnxruntime, built from the folder's weights (fastest, no torch); "
            "numpy: a built-in BERT encoder in numpy; torch: the sentence-transformers library (any "
            "architecture); auto: onnx for BERT-family folders when onnxruntime is installed, else "
            "numpy, else torch."
        ),
    )
    quantize: Literal["none", "int8"] = Field(
        default="none",
        description=(
            "int8: the onnx backend runs the weight products in int8 (about twice as fast on CPUs, "
            "embeddings within ~0.01 cosine of fp32); made once and cached in cache_dir."
        ),
    )
    cache_dir: str | None = Field(
        default=None,
        description=(
            "Where derived model files (the onnx graphs) are kept, keyed by the weights and library "
            "versions; none: rebuilt at every start."
        ),
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    device: str = Field(
        default="cpu",
        description=(
            "torch device of the torch backend ('cpu', 'cuda', 'cuda:1'); auto: a GPU when there is one. "
            "The numpy backend always runs on the CPU."
        ),
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {
            "backend": "${env.EMBEDDING_BACKEND:=auto}",
            "quantize": "${env.EMBEDDING_QUANTIZE:=none}",
            "cache_dir": "${env.EMBEDDING_CACHE_DIR:=${env.XDG_CACHE_HOME:=~/.cache}/llamastack/embeddings}",
        }
