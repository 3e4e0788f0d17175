"""A registry of resources of one kind (models, shields, vector dbs...), persisted in the kv store.

Each resource is owned by one provider. Resources from the run config are registered at every
start; resources registered over the API are stored and re-registered with their provider at the
next start. The table never needs to know what kind of resource it holds: the owning provider's
register/unregister hooks are handed in. Stored records go through a RecordStore: validated before
they are written, and a stored record that no longer validates is set aside (logged, not served,
still deletable) instead of stopping the start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..apis.common import Resource
from ..errors import ConflictError, NotFoundError
from ..storage.kvstore import KVStore
from ..storage.records import RecordStore

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)


class ResourceTable(Generic[R]):
    def __init__(
        self,
        *,
        kind: str,
        resource_class: type[R],
        store: KVStore,
        owners: dict[str, object],
        register_hook: Callable[[object, R], Awaitable[R]],
        unregister_hook: Callable[[object, R], Awaitable[None]],
        not_found: Callable[[str], NotFoundError],
    ) -> None:
        self.kind = kind
        self.resource_class = resource_class
        self.store = store
        self.records: RecordStore[R] = RecordStore(store, resource_class, kind=kind)
        self.owners = owners  # provider_id -> provider implementation
        self._register_hook = register_hook
        self._unregister_hook = unregister_hook
        self._not_found = not_found
        self._resources: dict[str, R] = {}
        self._lock = asyncio.Lock()

    def get(self, identifier: str) -> R:
        try:
            return self._resources[identifier]
        except KeyError:
            raise self._not_found(identifier) from None

    def find(self, identifier: str) -> R | None:
        return self._resources.get(identifier)

    def list(self) -> list[R]:
        return list(self._resources.values())

    def owner(self, resource: R) -> object:
        return self.owners[resource.provider_id]

    async def load(self, configured: list[R]) -> None:
        """At start-up: register the run config's resources, then the stored ones."""
        for resource in configured:
            registered = await self._register_hook(self.owner(resource), resource)
            self._resources[registered.identifier] = registered
        for resource in await self.records.list():
            ident = resource.identifier
            if ident in self._resources:
                continue
            if resource.provider_id not in self.owners:
                log.warning(
                    "Stored %s '%s' belongs to provider '%s', which this run config does not have; "
                    "it stays stored but is not served.",
                    self.kind,
                    ident,
                    resource.provider_id,
                )
                continue
            try:
                self._resources[ident] = await self._register_hook(self.owner(resource), resource)
            except Exception as exc:  # a stored resource that no longer loads must not stop the server
                log.warning("Could not restore %s '%s': %s", self.kind, ident, exc)

    async def register(self, resource: R) -> R:
        ident = resource.identifier
        self.records.validate(ident, resource)  # refuse what could not be stored before any hook runs
        async with self._lock:
            existing = self._resources.get(ident)
            if existing is not None:
                if existing.provider_id != resource.provider_id:
                    raise ConflictError(
                        f"A {self.kind} named '{ident}' is already registered with provider "
                        f"'{existing.provider_id}'. Unregister it first or choose another id."
                    )
                await self._unregister_hook(self.owner(existing), existing)
            registered = await self._register_hook(self.owner(resource), resource)
            try:
                await self.records.put(ident, registered)
            except BaseException:  # the provider changed it into something unstorable: undo
                self._resources.pop(ident, None)
                await self._unregister_hook(self.owner(registered), registered)
                raise
            self._resources[ident] = registered
            return registered

    async def unregister(self, identifier: str, *, missing_ok: bool = False) -> None:
        """Unregisters a served resource; a stored one that is not served (unreadable, or its
        provider is not configured) has only its record removed."""
        async with self._lock:
            resource = self._resources.get(identifier)
            if resource is None:
                if await self.records.exists(identifier):
                    await self.records.delete(identifier)
                    return
                if missing_ok:
                    return
                raise self._not_found(identifier)
            await self._unregister_hook(self.owner(resource), resource)
            del self._resources[identifier]
            await self.records.delete(identifier)
