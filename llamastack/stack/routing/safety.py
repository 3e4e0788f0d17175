"""The Shields API (which shields exist, and who owns each) and the Safety router that runs them."""

from __future__ import annotations

from typing import Any

from ..apis.inference.native import Message
from ..apis.safety import (
    ListShieldsResponse,
    RegisterShieldRequest,
    RunShieldResponse,
    SafetyProvider,
    Shield,
)
from ..errors import BadRequestError, ProviderNotFoundError, ShieldNotFoundError
from ..storage.kvstore import KVStore
from .table import ResourceTable


async def _register(provider: SafetyProvider, shield: Shield) -> Shield:
    return await provider.register_shield(shield)


async def _unregister(provider: SafetyProvider, shield: Shield) -> None:
    await provider.unregister_shield(shield)


class ShieldsTable:
    def __init__(self, store: KVStore, providers: dict[str, SafetyProvider]) -> None:
        self.providers = providers
        self.table: ResourceTable[Shield, SafetyProvider] = ResourceTable(
            kind="shield",
            resource_class=Shield,
            store=store,
            owners=providers,
            register_hook=_register,
            unregister_hook=_unregister,
            not_found=ShieldNotFoundError,
        )

    def build(
        self,
        shield_id: str,
        *,
        provider_id: str | None,
        provider_shield_id: str | None,
        params: dict[str, Any] | None,
    ) -> Shield:
        if provider_id is None:
            if len(self.providers) != 1:
                raise BadRequestError(
                    f"Several safety providers are configured ({', '.join(self.providers)}); "
                    "say which one with provider_id."
                )
            provider_id = next(iter(self.providers))
        elif provider_id not in self.providers:
            raise ProviderNotFoundError(provider_id, list(self.providers))
        return Shield(
            identifier=shield_id,
            provider_id=provider_id,
            provider_resource_id=provider_shield_id or shield_id,
            params=params,
        )

    async def list_shields(self) -> ListShieldsResponse:
        return ListShieldsResponse(data=self.table.list())

    async def get_shield(self, identifier: str) -> Shield:
        return self.table.get(identifier)

    async def register_shield(self, request: RegisterShieldRequest) -> Shield:
        shield = self.build(
            request.shield_id,
            provider_id=request.provider_id,
            provider_shield_id=request.provider_shield_id,
            params=request.params,
        )
        return await self.table.register(shield)

    async def unregister_shield(self, identifier: str) -> None:
        await self.table.unregister(identifier)


class SafetyRouter:
    def __init__(self, shields: ShieldsTable) -> None:
        self.shields = shields

    async def run_shield(
        self, shield_id: str, messages: list[Message], params: dict[str, Any]
    ) -> RunShieldResponse:
        shield = self.shields.table.get(shield_id)
        return await self.shields.table.owner(shield).run_shield(shield, messages, params)
