from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LlamaCppConfig(BaseModel):
    """Settings shared by every GGUF model this provider loads."""

    n_ctx: int = Field(default=4096, ge=64, description="Context window (prompt + completion) in tokens.")
    n_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "CPU threads per decode step; default: adaptive, all cores while that is fastest, fewer when "
            "another process competes for them (llama.cpp's threads spin and collapse then)."
        ),
    )
    n_threads_batch: int | None = Field(
        default=None,
        ge=1,
        description="Unused: prompt chunks share each decode step, and n_threads.",
    )
    n_batch: int = Field(default=512, ge=1, le=8192, description="Tokens evaluated per decode step, at most.")
    max_parallel: int = Field(
        default=8,
        ge=1,
        le=64,
        description=(
            "Requests per model decoded together in one batch; each holds n_ctx tokens of KV cache. "
            "More wait in the queue."
        ),
    )
    prefill_chunk: int = Field(
        default=128,
        ge=1,
        description="Prompt tokens evaluated per step while other requests stream, so they keep flowing.",
    )
    # Off by default: exact reuse (a prompt's KV where it is what the new prompt computes itself, see
    # batching.py) is always on; this adds the rest, which is not bit-identical.
    prefix_reuse: bool = Field(
        default=False,
        description=(
            "Also start a prompt after the longest cached prefix where that is not exact (an earlier "
            "answer's tokens, a prompt of another length class). Faster agent turns; greedy outputs "
            "may differ slightly from a fresh computation. Exact reuse is always on."
        ),
    )
    chat_format: str | None = Field(
        default=None,
        description="A llama.cpp chat format name (e.g. 'chatml'); default: the GGUF's own chat template.",
    )
    amx: bool = Field(
        default=False,
        description=(
            "Use llama.cpp's AMX matrix kernels where the installed build has them. Off: they crash on "
            "some AMX CPUs (llama.cpp issue 20824), so such a build loads weights without them."
        ),
    )
    max_queued_requests: int = Field(
        default=64,
        ge=1,
        description="Requests waiting per model beyond which new ones get 503 + Retry-After.",
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {
            "n_ctx": "${env.LLAMA_CPP_N_CTX:=4096}",
            "n_threads": "${env.LLAMA_CPP_N_THREADS:=}",
            "max_parallel": "${env.LLAMA_CPP_MAX_PARALLEL:=8}",
        }
