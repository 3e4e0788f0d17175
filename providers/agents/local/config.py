from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LocalAgentsConfig(BaseModel):
    db_path: str = Field(
        default="~/.llamastack/agents.db", description="sqlite file for agents, sessions, turns and steps."
    )
    memory_max_chunks: int = Field(
        default=5, ge=1, le=50, description="Chunks retrieved per turn for RAG agents."
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"db_path": "${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/local}/agents.db"}
