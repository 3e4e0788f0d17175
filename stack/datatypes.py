"""The APIs the stack serves and the data that describes a provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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


# APIs served by the stack itself rather than by a configured provider.
BUILTIN_APIS = frozenset({Api.models, Api.providers, Api.inspect})


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

    @property
    def is_remote(self) -> bool:
        return self.provider_type.startswith("remote::")
