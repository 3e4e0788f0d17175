"""The APIs the stack serves and the data that describes a provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .outbound import OutboundPolicy


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


class ProviderDeps(dict[Api, Any]):
    """What a provider's factory receives: the APIs it declared, keyed by Api, and the stack services
    every provider uses rather than re-implementing (`outbound`: the policy for connections it opens
    on a client's behalf)."""

    def __init__(self, apis: Mapping[Api, Any] | None = None, *, outbound: OutboundPolicy | None = None):
        super().__init__(apis or {})
        self.outbound = outbound if outbound is not None else OutboundPolicy()

    @staticmethod
    def outbound_of(deps: Mapping[Api, Any]) -> OutboundPolicy:
        """The stack's outbound policy; the strict default for a plain mapping (a provider built by hand)."""
        return deps.outbound if isinstance(deps, ProviderDeps) else OutboundPolicy()
