"""Each package's public surface, pinned: a name added to or dropped from a package's `__all__` is a
change to what other code (and users) may import, so it shows up here first. A new package needs an
entry, too."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import llamastack

PROVIDER = ["get_provider_impl"]

SURFACE: dict[str, list[str]] = {
    "llamastack": [],
    "llamastack.cli": [],
    "llamastack.cli.images": [],
    "llamastack.distributions": ["DISTRIBUTIONS_DIR", "available", "describe"],
    "llamastack.providers": [],
    "llamastack.providers.agents": [],
    "llamastack.providers.agents.local": PROVIDER,
    "llamastack.providers.files": [],
    "llamastack.providers.files.localfs": PROVIDER,
    "llamastack.providers.inference": [],
    "llamastack.providers.inference.llama_cpp": PROVIDER,
    "llamastack.providers.inference.sentence_transformers": PROVIDER,
    "llamastack.providers.inference.transformers": PROVIDER,
    "llamastack.providers.inference.remote": [],
    "llamastack.providers.inference.remote.databricks": PROVIDER,
    "llamastack.providers.inference.remote.fireworks": PROVIDER,
    "llamastack.providers.inference.remote.llama_cpp_server": PROVIDER,
    "llamastack.providers.inference.remote.ollama": PROVIDER,
    "llamastack.providers.inference.remote.openai": PROVIDER,
    "llamastack.providers.inference.remote.openai_compat": PROVIDER,
    "llamastack.providers.inference.remote.tgi": PROVIDER,
    "llamastack.providers.inference.remote.together": PROVIDER,
    "llamastack.providers.inference.remote.vllm": PROVIDER,
    "llamastack.providers.safety": [],
    "llamastack.providers.safety.code_scanner": PROVIDER,
    "llamastack.providers.safety.llama_guard": PROVIDER,
    "llamastack.providers.tool_runtime": [],
    "llamastack.providers.tool_runtime.code_interpreter": PROVIDER,
    "llamastack.providers.tool_runtime.mcp": PROVIDER,
    "llamastack.providers.tool_runtime.rag": PROVIDER,
    "llamastack.providers.tool_runtime.web": PROVIDER,
    "llamastack.providers.utils": [],
    "llamastack.providers.utils.tool_parsers": [
        "BuiltinToolParser",
        "FormatParser",
        "FunctionTagToolParser",
        "JsonToolParser",
        "PARSERS",
        "ParseResult",
        "ParsedToolCall",
        "ParserChain",
        "PythonListToolParser",
        "ToolNames",
        "ToolParser",
        "UnknownToolFormatError",
        "get_parser",
        "select_parser",
        "selected_format",
    ],
    "llamastack.providers.vector_io": [],
    "llamastack.providers.vector_io.chroma": PROVIDER,
    "llamastack.providers.vector_io.sqlite_vec": PROVIDER,
    "llamastack.stack": [],
    "llamastack.stack.apis": [
        "Agents",
        "Files",
        "FilesProvider",
        "Inference",
        "InferenceProvider",
        "Models",
        "RAGToolRuntime",
        "Responses",
        "Safety",
        "SafetyProvider",
        "Shields",
        "StoredChunk",
        "ToolGroups",
        "ToolRuntime",
        "ToolRuntimeProvider",
        "VectorDBs",
        "VectorIO",
        "VectorIOProvider",
        "VectorStores",
    ],
    "llamastack.stack.apis.inference": [],
    "llamastack.stack.ingestion": [
        "Chunking",
        "DocumentError",
        "DocumentFetchError",
        "DocumentLimits",
        "DocumentTooLargeError",
        "LoadedDocument",
        "PreparedFile",
        "TextChunk",
        "UnsupportedDocumentError",
        "chunk_text",
        "count_tokens",
        "default_tokenizer",
        "document_chunks",
        "extract",
        "extract_text",
        "file_text",
        "guess_mime_type",
        "insert_documents",
        "load_document",
        "prepare_file",
        "read_document",
        "replace_document",
    ],
    "llamastack.stack.outbound": [
        "AllowRule",
        "ENV_SETTING",
        "OutboundConfig",
        "OutboundPolicy",
        "OutboundRefusedError",
        "SETTING",
        "classify",
    ],
    "llamastack.stack.routing": [],
    "llamastack.stack.server": [],
    "llamastack.stack.server.routes": [],
    "llamastack.stack.storage": ["KVStore", "KVTransaction", "RecordStore", "SqliteKVStore", "open_storage"],
    "llamastack.stack.translate": [],
}


def _packages(package: ModuleType) -> dict[str, ModuleType]:
    found = {package.__name__: package}
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            found.update(_packages(importlib.import_module(f"{package.__name__}.{info.name}")))
    return found


def test_every_package_declares_the_pinned_surface() -> None:
    packages = _packages(llamastack)
    assert sorted(packages) == sorted(SURFACE), "a package was added or removed: update SURFACE"
    for name, package in packages.items():
        declared = getattr(package, "__all__", None)
        assert declared is not None, f"{name} has no __all__"
        assert sorted(declared) == sorted(SURFACE[name]), f"{name}.__all__ changed"


def test_every_exported_name_resolves() -> None:
    for name, exported in SURFACE.items():
        package = importlib.import_module(name)
        for attr in exported:
            assert getattr(package, attr) is not None, f"{name}.{attr}"


def test_the_api_protocols_are_the_modules_own() -> None:
    from llamastack.stack import apis
    from llamastack.stack.apis.vector_io import VectorIO

    assert apis.VectorIO is VectorIO
