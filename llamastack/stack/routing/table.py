"""A registry of resources of one kind (models, shields, vector dbs...), persisted in the kv store.

Each resource is owned by one provider. Resources from the run config are registered at every
start; resources registered over the API are stored and re-registered with their provider at the
next start. The table never needs to know what kind of resource it holds: the owning provider's
register/unregister hooks are handed in. Stored records go through a RecordStore: validated before
they are written, and a stored record that no longer validates is set aside (logged, not served,
still deletable) instead of stopping the start-up.

With API keys, a resource registered over the API belongs to the key that registered it (see
stack/access.py): other keys get 404 for it and cannot take its id. Run-config resources are
shared by every key; only an admin key may replace or unregister them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .. import access
from ..apis.common import Resource
from ..errors import ConflictError, ForbiddenError, NotFoundError
from ..storage.kvstore import KVStore
from ..storage.records import RecordStore

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)
P = TypeVar("P")  # the owning providers' Protocol (InferenceProvider, SafetyProvider, ...)


class ResourceTable(Generic[R, P]):
    def __init__(
        self,
        *,
        kind: str,
        resource_class: type[R],
        store: KVStore,
        owners: dict[str, P],
        register_hook: Callable[[P, R], Awaitable[R]],
        unregister_hook: Callable[[P, R], Awaitable[None]],
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
        self._holders: dict[str, str | None] = {}  # identifier -> principal that registered it
        self._configured: set[str] = set()  # identifiers from the run config
        self._ownership = access.OwnerIndex(store, kind)
        self._lock = asyncio.Lock()

    def get(self, identifier: str) -> R:
        resource = self.find(identifier)
        if resource is None:
            raise self._not_found(identifier)
        return resource

    def find(self, identifier: str) -> R | None:
        """The resource, if it exists and the caller may see it."""
        if not access.can_see(self._holders.get(identifier)):
            return None
        return self._resources.get(identifier)

    def list(self) -> list[R]:
        resources = list(self._resources.values())
        return access.filter_visible(resources, lambda r: self._holders.get(r.identifier))

    def _may_change(self, identifier: str) -> bool:
        return identifier not in self._configured or access.may_manage_run_config()

    def owner(self, resource: R) -> P:
        return self.owners[resource.provider_id]

    async def load(self, configured: Sequence[R]) -> None:
        """At start-up: register the run config's resources, then the stored ones."""
        for resource in configured:
            registered = await self._register_hook(self.owner(resource), resource)
            self._resources[registered.identifier] = registered
            self._configured.add(registered.identifier)
        holders = await self._ownership.all()
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
                self._holders[ident] = holders.get(ident)
            except Exception as exc:  # a stored resource that no longer loads must not stop the server
                log.warning("Could not restore %s '%s': %s", self.kind, ident, exc)

    async def register(self, resource: R) -> R:
        ident = resource.identifier
        self.records.validate(ident, resource)  # refuse what could not be stored before any hook runs
        async with self._lock:
            existing = self._resources.get(ident)
            holder = access.owner_for_new_record()
            if existing is not None:
                current_holder = self._holders.get(ident)
                if not access.can_see(current_holder) or not self._may_change(ident):
                    raise ConflictError(f"The {self.kind} id '{ident}' is already taken; choose another id.")
                holder = current_holder  # replacing a resource keeps who it belongs to
                if existing.provider_id != resource.provider_id:
                    raise ConflictError(
                        f"A {self.kind} named '{ident}' is already registered with provider "
                        f"'{existing.provider_id}'. Unregister it first or choose another id."
                    )
                await self._unregister_hook(self.owner(existing), existing)
            registered = await self._register_hook(self.owner(resource), resource)
            await self._ownership.set(ident, holder)  # before the record: never an unowned record
            try:
                await self.records.put(ident, registered)
            except BaseException:  # the provider changed it into something unstorable: undo
                self._resources.pop(ident, None)
                await self._unregister_hook(self.owner(registered), registered)
                raise
            self._resources[ident] = registered
            self._holders[ident] = holder
            return registered

    async def unregister(self, identifier: str, *, missing_ok: bool = False) -> None:
        """Unregisters a served resource; a stored one that is not served (unreadable, or its
        provider is not configured) has only its record removed."""
        async with self._lock:
            resource = self._resources.get(identifier)
            if resource is None:
                stored = await self.records.exists(identifier)
                if stored and access.can_see(await self._ownership.owner(identifier)):
                    await self.records.delete(identifier)
                    await self._ownership.release(identifier)
                    return
                if missing_ok:
                    return
                raise self._not_found(identifier)
            if not access.can_see(self._holders.get(identifier)):
                if missing_ok:
                    return
                raise self._not_found(identifier)
            if not self._may_change(identifier):
                raise ForbiddenError(
                    f"The {self.kind} '{identifier}' comes from the run config and is shared by every "
                    "API key; only an admin key can unregister it."
                )
            await self._unregister_hook(self.owner(resource), resource)
            del self._resources[identifier]
            self._holders.pop(identifier, None)
            self._configured.discard(identifier)
            await self.records.delete(identifier)
            await self._ownership.release(identifier)
