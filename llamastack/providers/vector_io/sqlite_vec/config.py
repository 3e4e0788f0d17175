from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SqliteVecConfig(BaseModel):
    db_path: str = Field(
        default="~/.llamastack/sqlite_vec.db",
        description="The sqlite file holding every vector db of this provider.",
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"db_path": "${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/local}/sqlite_vec.db"}
