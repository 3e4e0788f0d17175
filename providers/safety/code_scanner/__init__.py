"""inline::code-scanner: flags insecure Python in messages with Bandit (PyCQA), offline."""

from __future__ import annotations

from typing import Any

from .config import CodeScannerConfig


async def get_provider_impl(config: CodeScannerConfig, deps: dict[Any, Any]) -> Any:
    from .provider import CodeScannerSafety

    return CodeScannerSafety(config)
