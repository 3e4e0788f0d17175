"""The APIs the stack serves and the data that describes a provider."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError
from .outbound import OutboundPolicy

if TYPE_CHECKING:
    from .apis.agents import Agents
    from .apis.files import Files
    from .apis.inference.core import Inference
    from .apis.models import Models
    from .apis.safety import Safety, Shields
    from .apis.tools import RAGToolRuntime, ToolGroups, ToolRuntime
    from .apis.vector_io import VectorDBs, VectorIO
    from .apis.vector_stores import VectorStores
    from .storage.kvstore import KVStore
    from .storage.replicas import ReplicaLeases


class Api(StrEnum):
    inference = "inference"
    models = "models"
    providers = "providers"
    inspect = "inspect"
    safety = "safety"
    shields = "shields"
    vector_io = "vector_io"
    vector_dbs = "vector_dbs"
    tool_runtime = "tool_runtime"
    tool_groups = "tool_groups"
    agents = "agents"
    files = "files"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider, as data: what it serves, where its code lives, what it needs."""

    api: Api
    provider_type: str  # "inline::name" (in-process) or "remote::name" (adapter to a server)
    module: str  # exposes `async def get_provider_impl(config, deps)`
    config_class: str  # "module:Class", a pydantic model
    description: str
    pip_packages: tuple[str, ...] = ()
    api_dependencies: tuple[Api, ...] = ()
    optional_api_dependencies: tuple[Api, ...] = field(default=())
    serves_rag_tool: bool = False  # a tool_runtime provider implementing RAGToolRuntime
    serves_mcp_endpoints: bool = False  # a tool_runtime provider reaching MCP servers by URL
    # Why a container image leaves this provider out unless asked (`llama-stack build --include`).
    image_cost: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderDeps:
    """What a provider's factory receives: the APIs its registry entry declares (`api_dependencies`,
    and the `optional_api_dependencies` the run config has), each typed by its Protocol, and the stack
    services every provider uses rather than re-implementing (`outbound`: the policy for connections
    it opens on a client's behalf; `store`: the provider's own namespace of the stack's database, where
    it keeps its state instead of opening files; `replicas`: this process's lease, which tells whether
    work another replica recorded may still be running). An API the provider did not declare is None.

    Declaring an API gives all of its parts: inference -> inference and models; safety -> safety and
    shields; vector_io -> vector_io, vector_dbs and vector_stores; tool_runtime -> tool_runtime,
    tool_groups and rag_tool; files -> files; agents -> agents.
    """

    inference: Inference | None = None
    models: Models | None = None
    safety: Safety | None = None
    shields: Shields | None = None
    vector_io: VectorIO | None = None
    vector_dbs: VectorDBs | None = None
    vector_stores: VectorStores | None = None
    tool_runtime: ToolRuntime | None = None
    tool_groups: ToolGroups | None = None
    rag_tool: RAGToolRuntime | None = None
    files: Files | None = None
    agents: Agents | None = None
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    store: KVStore | None = None
    replicas: ReplicaLeases | None = None

    def limited_to(self, apis: Iterable[Api]) -> ProviderDeps:
        """These deps with only the parts of `apis` kept (what one provider declared)."""
        keep = {part for api in apis for part in API_PARTS.get(api, ())}
        dropped: dict[str, Any] = {
            name: None for parts in API_PARTS.values() for name in parts if name not in keep
        }
        return dataclasses.replace(self, **dropped)


# The ProviderDeps fields every provider gets, whatever it declares: the stack's services.
SERVICES: tuple[str, ...] = ("outbound", "store", "replicas")

# Which ProviderDeps fields each API brings.
API_PARTS: dict[Api, tuple[str, ...]] = {
    Api.inference: ("inference", "models"),
    Api.safety: ("safety", "shields"),
    Api.vector_io: ("vector_io", "vector_dbs", "vector_stores"),
    Api.tool_runtime: ("tool_runtime", "tool_groups", "rag_tool"),
    Api.files: ("files",),
    Api.agents: ("agents",),
}

T = TypeVar("T")


def required(value: T | None, api: Api) -> T:
    """A declared dependency; the resolver guarantees it, so None here is a registry mistake."""
    if value is None:
        raise ConfigError(f"This provider needs the {api.value} API; declare it in its registry entry.")
    return value
