from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class SentenceTransformersConfig(BaseModel):
    backend: Literal["auto", "numpy", "torch"] = Field(
        default="auto",
        description=(
            "numpy: a built-in BERT encoder (fast start, no torch); torch: the sentence-transformers "
            "library (any architecture); auto: numpy when the folder is a BERT-family model."
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
        return {"backend": "${env.EMBEDDING_BACKEND:=auto}"}
