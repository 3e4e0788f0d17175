"""inline::code-interpreter: the builtin::code_interpreter tool, Python 3 in a bubblewrap sandbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import CodeInterpreterConfig

if TYPE_CHECKING:
    from .provider import CodeInterpreterRuntime


async def get_provider_impl(config: CodeInterpreterConfig, deps: ProviderDeps) -> CodeInterpreterRuntime:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import CodeInterpreterRuntime

    impl = CodeInterpreterRuntime(config)
    await impl.initialize()
    return impl


__all__ = ["get_provider_impl"]
