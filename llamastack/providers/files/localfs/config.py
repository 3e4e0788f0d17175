from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field

_STATE_DIR = "${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/local}"


def _default_storage_dir() -> str:
    return (os.environ.get("LLAMA_STACK_STATE_DIR") or "~/.llamastack/distributions/local") + "/files"


class LocalFSFilesConfig(BaseModel):
    storage_dir: str = Field(
        default_factory=_default_storage_dir,
        description=(
            "Folder for the files' content (one file per id); replicas share it (their metadata is in "
            "the stack's database)."
        ),
    )
    max_file_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Largest upload accepted; larger ones get 413."
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"storage_dir": f"{_STATE_DIR}/files", "max_file_bytes": "${env.FILES_MAX_BYTES:=67108864}"}
