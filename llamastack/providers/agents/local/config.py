from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class LocalAgentsConfig(BaseModel):
    db_path: str = Field(
        default="~/.llamastack/agents.db",
        description=(
            "sqlite file for agents, sessions, turns and steps when the provider runs outside a stack. "
            "In a stack they live in the stack's database (storage / LLAMA_STACK_DATABASE_URL), and "
            "the records of this file, if set and there (an older version's), are imported once."
        ),
    )
    rag_mode: Literal["tool", "memory_retrieval"] = Field(
        default="tool",
        description=(
            "How agents with builtin::rag (and documents attached to turns) use retrieval. 'tool': the "
            "model is offered knowledge_search and each call is a tool_execution step. "
            "'memory_retrieval': the agent searches before the turn's first inference (a "
            "memory_retrieval step) and adds the context to the user message."
        ),
    )
    memory_max_chunks: int = Field(
        default=5, ge=1, le=50, description="Chunks retrieved per turn in memory_retrieval mode."
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"db_path": "${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/local}/agents.db"}
