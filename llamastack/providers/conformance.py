"""Each provider class implements its API's provider Protocol: checked by mypy, never run.

The registry names provider modules as strings (so nothing heavy loads until a run config asks for
it), which hides them from the type checker; the functions below restore that check. A provider
added to the registry gets a line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__: list[str] = []

if TYPE_CHECKING:
    from llamastack.stack.apis import (
        Agents,
        FilesProvider,
        InferenceProvider,
        RAGToolRuntime,
        SafetyProvider,
        ToolRuntimeProvider,
        VectorIOProvider,
    )
    from llamastack.stack.routing.model_discovery import ListsServedModels

    from .agents.local.provider import LocalAgents
    from .files.localfs.provider import LocalFSFiles
    from .inference.llama_cpp.provider import LlamaCppInference
    from .inference.remote.openai_compat.adapter import OpenAICompatInference
    from .inference.sentence_transformers.provider import SentenceTransformersInference
    from .inference.transformers.provider import TransformersInference
    from .safety.code_scanner.provider import CodeScannerSafety
    from .safety.llama_guard.provider import LlamaGuardSafety
    from .tool_runtime.code_interpreter.provider import CodeInterpreterRuntime
    from .tool_runtime.mcp.provider import MCPToolRuntime
    from .tool_runtime.rag.provider import RagRuntime
    from .tool_runtime.web.provider import BraveSearch, TavilySearch, WolframAlpha
    from .vector_io.chroma.provider import ChromaVectorIO
    from .vector_io.sqlite_vec.provider import SqliteVecVectorIO

    def _llama_cpp(p: LlamaCppInference) -> InferenceProvider:
        return p

    def _remote(p: OpenAICompatInference) -> InferenceProvider:
        return p

    def _remote_lists_models(p: OpenAICompatInference) -> ListsServedModels:
        return p

    def _sentence_transformers(p: SentenceTransformersInference) -> InferenceProvider:
        return p

    def _transformers(p: TransformersInference) -> InferenceProvider:
        return p

    def _safety(p: LlamaGuardSafety | CodeScannerSafety) -> SafetyProvider:
        return p

    def _vector_io(p: ChromaVectorIO | SqliteVecVectorIO) -> VectorIOProvider:
        return p

    def _tool_runtime(
        p: RagRuntime | CodeInterpreterRuntime | MCPToolRuntime | BraveSearch | TavilySearch | WolframAlpha,
    ) -> ToolRuntimeProvider:
        return p

    def _rag_tool(p: RagRuntime) -> RAGToolRuntime:
        return p

    def _files(p: LocalFSFiles) -> FilesProvider:
        return p

    def _agents(p: LocalAgents) -> Agents:
        return p
