from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ChromaInlineConfig(BaseModel):
    db_path: str = Field(
        default="~/.llamastack/chroma",
        description="Folder of the embedded chroma database (created if missing).",
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"db_path": "${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/local}/chroma"}


class ChromaRemoteConfig(BaseModel):
    url: str = Field(default="http://127.0.0.1:8000", description="Base URL of a chroma server.")
    tenant: str | None = None
    database: str | None = None

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"url": "${env.CHROMA_URL:=http://127.0.0.1:8000}"}
