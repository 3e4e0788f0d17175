"""inline::code-scanner: flags insecure Python in messages with Bandit (PyCQA), offline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import CodeScannerConfig

if TYPE_CHECKING:
    from .provider import CodeScannerSafety


async def get_provider_impl(config: CodeScannerConfig, deps: ProviderDeps) -> CodeScannerSafety:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import CodeScannerSafety

    return CodeScannerSafety(config)


__all__ = ["get_provider_impl"]
