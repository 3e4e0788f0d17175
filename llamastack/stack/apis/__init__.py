"""The APIs the stack serves: per API, its pydantic wire types and its Protocols.

Each API has up to two Protocols. The API Protocol (``Inference``, ``VectorIO``, ``Files``...) is
what routes call, the routers in ``stack/routing`` implement, and other providers receive in their
``ProviderDeps``: it takes resource ids. The provider Protocol (``InferenceProvider``,
``VectorIOProvider``...) is what a provider implements: the router has already resolved the id to
the resource (a Model, a VectorDB) and its owning provider. Agents and the RAG tool have one
Protocol: the provider is the API.

| API            | module            | API Protocol(s)                     | provider Protocol     |
| -------------- | ----------------- | ----------------------------------- | --------------------- |
| inference      | inference/core.py | Inference                           | InferenceProvider     |
| models         | models.py         | Models                              | (inference providers) |
| responses      | responses.py      | Responses                           | (over Inference)      |
| safety, shields| safety.py         | Safety, Shields                     | SafetyProvider        |
| vector_io, dbs | vector_io.py      | VectorIO, VectorDBs                 | VectorIOProvider      |
| vector stores  | vector_stores.py  | VectorStores                        | (built on vector_io)  |
| files          | files.py          | Files                               | FilesProvider         |
| tools          | tools.py          | ToolGroups, ToolRuntime, RAGToolRuntime | ToolRuntimeProvider |
| agents         | agents.py         | Agents                              | Agents                |

The names are importable from here (``from llamastack.stack.apis import VectorIO``); the modules
load on first use, so importing one API does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agents import Agents
    from .files import Files, FilesProvider
    from .inference.core import Inference, InferenceProvider
    from .models import Models
    from .responses import Responses
    from .safety import Safety, SafetyProvider, Shields
    from .tools import RAGToolRuntime, ToolGroups, ToolRuntime, ToolRuntimeProvider
    from .vector_io import StoredChunk, VectorDBs, VectorIO, VectorIOProvider
    from .vector_stores import VectorStores

_WHERE = {
    "Agents": "agents",
    "Files": "files",
    "FilesProvider": "files",
    "Inference": "inference.core",
    "InferenceProvider": "inference.core",
    "Models": "models",
    "RAGToolRuntime": "tools",
    "Responses": "responses",
    "Safety": "safety",
    "SafetyProvider": "safety",
    "Shields": "safety",
    "StoredChunk": "vector_io",
    "ToolGroups": "tools",
    "ToolRuntime": "tools",
    "ToolRuntimeProvider": "tools",
    "VectorDBs": "vector_io",
    "VectorIO": "vector_io",
    "VectorIOProvider": "vector_io",
    "VectorStores": "vector_stores",
}

__all__ = [
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
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
