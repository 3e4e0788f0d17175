from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RagRuntimeConfig(BaseModel):
    chunk_overlap_ratio: float = Field(default=0.125, ge=0, lt=0.9, description="Overlap between chunks.")
    max_document_bytes: int = Field(default=25 * 2**20, ge=1024, description="Largest document accepted.")
    fetch_timeout_s: float = Field(default=20.0, gt=0, description="Timeout for documents given as URLs.")
    embedding_batch_size: int = Field(default=256, ge=1, description="Chunks embedded and stored per batch.")
    allow_private_urls: bool = Field(
        default=False,
        description=(
            "Let documents given by URL point at loopback, private or link-local addresses, on top of "
            "the server's outbound policy (server.outbound); cloud metadata addresses stay refused. "
            "For single-user machines: on a shared server users could make it fetch internal hosts."
        ),
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {}
