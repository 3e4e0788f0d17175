"""Named bundles of providers: each folder holds a run.yaml."""

from __future__ import annotations

from pathlib import Path

DISTRIBUTIONS_DIR = Path(__file__).parent


def available() -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(DISTRIBUTIONS_DIR.glob("*/run.yaml"))}


def describe(run_yaml: Path) -> str:
    """The first comment line of a run.yaml is its one-line description."""
    for line in run_yaml.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


__all__ = ["DISTRIBUTIONS_DIR", "available", "describe"]
