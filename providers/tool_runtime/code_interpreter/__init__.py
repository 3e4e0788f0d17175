"""inline::code-interpreter: the builtin::code_interpreter tool, Python 3 in a bubblewrap sandbox."""

from __future__ import annotations

from typing import Any

from .config import CodeInterpreterConfig


async def get_provider_impl(config: CodeInterpreterConfig, deps: dict[Any, Any]) -> Any:
    from .provider import CodeInterpreterRuntime

    impl = CodeInterpreterRuntime(config)
    await impl.initialize()
    return impl
