from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import BaseModel, Field


class CodeInterpreterConfig(BaseModel):
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="Wall-clock limit per run.")
    max_memory_mb: int = Field(default=1024, ge=64, description="Address-space limit of the interpreter.")
    max_output_kb: int = Field(
        default=64, ge=1, description="Kept of stdout, and of stderr; the rest is cut."
    )
    max_file_mb: int = Field(default=16, ge=1, description="Largest file the code may write.")
    max_attachments: int = Field(default=10, ge=0, description="Files written by the code returned, at most.")
    max_attachment_mb: float = Field(default=5.0, ge=0, description="Total size of the returned files.")
    max_processes: int = Field(
        default=32,
        ge=1,
        description="Processes and threads the code may start (RLIMIT_NPROC; not enforced for root).",
    )
    max_open_files: int = Field(default=128, ge=16, description="Open file descriptors (RLIMIT_NOFILE).")
    network_isolation: Literal["auto", "namespace", "guard"] = Field(
        default="auto",
        description="namespace: `unshare --net` (kernel-enforced); guard: socket functions raise "
        "(against accidents, not a boundary); auto: namespace when it works here, else guard.",
    )
    python: str = Field(
        default_factory=lambda: sys.executable,
        description="Interpreter to run; started with -I -S, so only its standard library is importable.",
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"timeout_s": 10.0, "max_memory_mb": 1024, "network_isolation": "auto"}
