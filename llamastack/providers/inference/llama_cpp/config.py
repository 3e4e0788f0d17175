from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LlamaCppConfig(BaseModel):
    """Settings shared by every GGUF model this provider loads."""

    n_ctx: int = Field(default=4096, ge=64, description="Context window (prompt + completion) in tokens.")
    n_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "CPU threads for decoding; default: half the cores (llama.cpp's default), which leaves a core "
            "for the HTTP side and avoids spinning threads competing with it."
        ),
    )
    n_threads_batch: int | None = Field(
        default=None, ge=1, description="CPU threads for prompt evaluation; default: all cores."
    )
    n_batch: int = Field(default=512, ge=1, description="Prompt tokens evaluated per batch.")
    chat_format: str | None = Field(
        default=None,
        description="A llama.cpp chat format name (e.g. 'chatml'); default: the GGUF's own chat template.",
    )
    max_queued_requests: int = Field(
        default=64,
        ge=1,
        description="Requests waiting per model beyond which new ones get 503 + Retry-After.",
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"n_ctx": "${env.LLAMA_CPP_N_CTX:=4096}", "n_threads": "${env.LLAMA_CPP_N_THREADS:=}"}
