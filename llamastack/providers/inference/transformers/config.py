from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class TransformersConfig(BaseModel):
    """Settings shared by every model this provider loads with Hugging Face transformers."""

    device: str = Field(
        default="cuda",
        description=(
            "torch device ('cuda', 'cuda:1', 'cpu'); 'cuda' without a GPU falls back to the CPU "
            "(and float32), with a log line saying so."
        ),
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto", description="Weights' dtype; auto: bfloat16 on a GPU, float32 on the CPU."
    )
    quantization: Literal["none", "4bit", "8bit"] = Field(
        default="none", description="Load the weights quantized through bitsandbytes (GPU only)."
    )
    max_context: int | None = Field(
        default=None,
        ge=64,
        description="Context window (prompt + completion) in tokens; default: the model's own.",
    )
    local_files_only: bool = Field(
        default=False,
        description="Never reach the model hub: hub ids must already be in the local Hugging Face cache.",
    )
    max_queued_requests: int = Field(
        default=64,
        ge=1,
        description="Requests waiting per model beyond which new ones get 503 + Retry-After.",
    )
    max_image_bytes: int = Field(default=20 * 2**20, ge=1024, description="Largest image accepted, in bytes.")
    image_fetch_timeout_s: float = Field(
        default=20.0, gt=0, description="Deadline for fetching an image by http(s) URL."
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {
            "device": "${env.TRANSFORMERS_DEVICE:=cuda}",
            "dtype": "${env.TRANSFORMERS_DTYPE:=auto}",
            "quantization": "${env.TRANSFORMERS_QUANTIZATION:=none}",
        }
