from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

_CODE = r"^S\d{1,2}$"


class CustomCategory(BaseModel):
    name: str = Field(min_length=1, description="e.g. 'Medical Advice'")
    description: str | None = Field(default=None, description="What the category covers, shown to the model.")


class LlamaGuardConfig(BaseModel):
    excluded_categories: list[str] = Field(
        default_factory=list,
        description="Category codes not to enforce, e.g. ['S6']: a verdict naming only these is safe.",
    )
    category_descriptions: dict[str, str] = Field(
        default_factory=dict, description="Extra text under a built-in category, e.g. {'S6': 'Includes ...'}."
    )
    custom_categories: list[CustomCategory] = Field(
        default_factory=list, description="Categories added after the built-in ones, numbered on from them."
    )
    constrain_output: bool = Field(
        default=True,
        description="Restrict the guard model's output to the verdict format with a grammar.",
    )

    @field_validator("excluded_categories")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        import re

        bad = [c for c in codes if not re.match(_CODE, c)]
        if bad:
            raise ValueError(f"category codes look like 'S1'..'S14'; got {bad}")
        return codes

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"excluded_categories": []}
