from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


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
        description="Processes and threads of one run (RLIMIT_NPROC, per run in the bubblewrap sandbox).",
    )
    max_open_files: int = Field(default=128, ge=16, description="Open file descriptors (RLIMIT_NOFILE).")
    isolation: Literal["auto", "bubblewrap", "none"] = Field(
        default="auto",
        description="bubblewrap: run the code in a bubblewrap sandbox, or refuse to run it; none: no "
        "sandbox (needs allow_unsandboxed); auto: bubblewrap, or none only if allow_unsandboxed is set.",
    )
    allow_unsandboxed: bool = Field(
        default=False,
        description="Run code without a sandbox (as the server's user, with its files and network) "
        "when there is none. Only for trusted code.",
    )
    sandbox_uid: int = Field(
        default=65534,
        ge=1,
        lt=2**32 - 1,
        description="uid and gid of the code in the sandbox; on the host too when the server runs as root.",
    )
    python: str = Field(
        default_factory=lambda: sys.executable,
        description="Interpreter to run; started with -I -S, so only its standard library is importable.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_options(cls, data: Any) -> Any:
        if isinstance(data, dict) and "network_isolation" in data:
            raise ValueError(
                "network_isolation was replaced by isolation (auto, bubblewrap or none) and "
                "allow_unsandboxed; see docs/configuration.md"
            )
        return data

    @model_validator(mode="after")
    def _none_is_explicit(self) -> CodeInterpreterConfig:
        if self.isolation == "none" and not self.allow_unsandboxed:
            raise ValueError("isolation 'none' runs code without a sandbox: also set allow_unsandboxed: true")
        return self

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"timeout_s": 10.0, "max_memory_mb": 1024, "isolation": "auto", "allow_unsandboxed": False}
