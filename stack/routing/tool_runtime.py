"""The tool runtime: for now the RAG tool's insert/query, served by the provider that implements them."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequestError


class ToolRuntimeRouter:
    def __init__(self, providers: dict[str, Any]) -> None:
        self.providers = providers

    @property
    def rag(self) -> Any:
        for impl in self.providers.values():
            if hasattr(impl, "insert") and hasattr(impl, "query"):
                return impl
        raise BadRequestError("No RAG tool provider is configured (add inline::rag-runtime to tool_runtime).")
