from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class CodeScannerConfig(BaseModel):
    min_severity: Literal["LOW", "MEDIUM", "HIGH"] = Field(
        default="MEDIUM", description="Findings below this severity are ignored."
    )
    min_confidence: Literal["LOW", "MEDIUM", "HIGH"] = Field(
        default="MEDIUM", description="Findings below this confidence are ignored."
    )
    skip_tests: list[str] = Field(default_factory=list, description="Bandit test ids to skip, e.g. ['B101'].")

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"min_severity": "MEDIUM"}
