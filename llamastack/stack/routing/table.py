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

Several replicas can share one database. Every change writes the record, its owner and a bump of
`registry_version:<kind>` in one transaction; before each request the stack compares the versions
with what this replica has seen and, for a kind that changed, `sync` re-reads its records (new ones
are registered with their provider here, removed ones dropped). A new id is claimed with
insert-if-absent before any provider hook runs, so of two replicas registering one id at once, one
wins and the other gets 409 without touching the winner's resource.

Discovered resources are the ones a provider reports it serves (a remote engine's models): each
replica asks its providers itself, so they are held in memory only, never stored. Like run-config
resources they are shared by every key and only an admin key may replace or remove them; a stored
registration of the same id (from this replica or another) takes the id over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from .. import access
from ..apis.common import Resource
from ..errors import ConflictError, ForbiddenError, NotFoundError
from ..storage.kvstore import KVStore, KVTransaction
from ..storage.records import RecordStore

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)
VERSION_PREFIX = "registry_version:"
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
        self._discovered: set[str] = set()  # identifiers a provider reported (in memory only)
        self._ownership = access.OwnerIndex(store, kind)
        self._lock = asyncio.Lock()
        self.version_key = f"{VERSION_PREFIX}{kind}"
        self._seen_version: str | None = None  # the registry version this replica's view reflects

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
        shared = identifier in self._configured or identifier in self._discovered
        return not shared or access.may_manage_run_config()

    def snapshot(self) -> dict[str, R]:
        """Every resource served here, whoever may see it (for the stack's own bookkeeping)."""
        return dict(self._resources)

    def is_discovered(self, identifier: str) -> bool:
        return identifier in self._discovered

    async def add_discovered(self, resource: R) -> bool:
        """Serves a resource its provider reported, unless the id is taken; whether it was added.
        The provider's register hook does not run: the provider itself described the resource."""
        async with self._lock:
            ident = resource.identifier
            try:
                self.records.validate(ident, resource)
            except Exception as exc:  # e.g. an id longer than any stored one may be
                log.info("Not serving %s '%s' reported by its provider: %s", self.kind, ident, exc)
                return False
            if ident in self._resources or await self.records.exists(ident):
                return False
            self._resources[ident] = resource
            self._holders[ident] = None
            self._discovered.add(ident)
            return True

    async def drop_discovered(self, identifier: str) -> bool:
        """Stops serving a discovered resource (one that became a registration stays); whether it did."""
        async with self._lock:
            if identifier not in self._discovered:
                return False
            self._discovered.discard(identifier)
            self._resources.pop(identifier, None)
            self._holders.pop(identifier, None)
            return True

    def owner(self, resource: R) -> P:
        return self.owners[resource.provider_id]

    async def load(self, configured: Sequence[R]) -> None:
        """At start-up: register the run config's resources, then the stored ones."""
        self._seen_version = await self.store.get(self.version_key)  # read first: later changes re-sync
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
            if existing is not None and ident in self._discovered:
                if not self._may_change(ident):
                    raise ConflictError(f"The {self.kind} id '{ident}' is already taken; choose another id.")
                existing = None  # a registration takes over a discovered id (and is stored)
            if existing is None:
                await self._claim(ident, resource, holder)  # 409 if any replica has the id
                try:
                    registered = await self._register_hook(self.owner(resource), resource)
                    await self._write(ident, registered, holder)
                except BaseException:  # the provider refused it (or made it unstorable): free the id
                    await self._write(ident, None, None)
                    raise
                self._discovered.discard(ident)
                self._resources[ident] = registered
                self._holders[ident] = holder
                return registered
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
            try:
                await self._write(ident, registered, holder)
            except BaseException:  # the provider changed it into something unstorable: undo
                self._resources.pop(ident, None)
                await self._unregister_hook(self.owner(registered), registered)
                raise
            self._resources[ident] = registered
            self._holders[ident] = holder
            return registered

    # --- the shared store ----------------------------------------------------------------------

    async def _bump(self, tx: KVTransaction) -> str:
        """Counts a change of this kind in the transaction; the new version."""
        await tx.insert_if_absent(self.version_key, "0")  # so that the read below locks a row
        version = str(int(await tx.get(self.version_key) or "0") + 1)
        await tx.set(self.version_key, version)
        return version

    def _after_write(self, previous: str | None, version: str) -> None:
        # Only our own change since what we had seen: still current. Otherwise the next sync reloads.
        if int(version) == int(previous or "0") + 1:
            self._seen_version = version

    async def _claim(self, ident: str, resource: R, holder: str | None) -> None:
        _, raw = self.records.validate(ident, resource)
        previous = self._seen_version
        async with self.store.transaction() as tx:
            if not await tx.insert_if_absent(self.records.prefix + ident, raw):
                raise ConflictError(
                    f"The {self.kind} id '{ident}' was just registered elsewhere; choose another id "
                    "or unregister it first."
                )
            await self._ownership.set_in(tx, ident, holder)
            version = await self._bump(tx)
        self._after_write(previous, version)

    async def _write(self, ident: str, resource: R | None, holder: str | None) -> None:
        """Stores (or, with None, removes) the record and its owner, in one transaction."""
        raw = self.records.validate(ident, resource)[1] if resource is not None else None
        previous = self._seen_version
        async with self.store.transaction() as tx:
            if raw is None:
                await tx.delete(self.records.prefix + ident)
                await self._ownership.set_in(tx, ident, None)
            else:
                await self._ownership.set_in(tx, ident, holder)
                await tx.set(self.records.prefix + ident, raw)
            version = await self._bump(tx)
        self._after_write(previous, version)

    async def sync(self, version: str | None) -> None:
        """Re-reads the stored records if another replica changed them since this one last looked."""
        if version == self._seen_version:
            return
        async with self._lock:
            if version == self._seen_version:
                return
            holders = await self._ownership.all()
            stored = {r.identifier: r for r in await self.records.list()}
            for ident, resource in stored.items():
                if ident in self._configured:
                    continue
                self._holders[ident] = holders.get(ident)
                if self._resources.get(ident) == resource or resource.provider_id not in self.owners:
                    continue
                try:
                    self._resources[ident] = await self._register_hook(self.owner(resource), resource)
                    self._discovered.discard(ident)  # registered elsewhere: the registration wins
                except Exception as exc:  # one that does not load here must not fail the request
                    log.warning("Could not load %s '%s' registered elsewhere: %s", self.kind, ident, exc)
            kept = self._configured | self._discovered
            for ident in [i for i in self._resources if i not in stored and i not in kept]:
                # Unregistered elsewhere: that replica ran the provider's hook (which may delete shared
                # data, e.g. a collection); here it only stops being served.
                del self._resources[ident]
                self._holders.pop(ident, None)
            self._seen_version = version

    async def unregister(self, identifier: str, *, missing_ok: bool = False) -> None:
        """Unregisters a served resource; a stored one that is not served (unreadable, or its
        provider is not configured) has only its record removed."""
        async with self._lock:
            resource = self._resources.get(identifier)
            if resource is None:
                stored = await self.records.exists(identifier)
                if stored and access.can_see(await self._ownership.owner(identifier)):
                    await self._write(identifier, None, None)
                    return
                if missing_ok:
                    return
                raise self._not_found(identifier)
            if not access.can_see(self._holders.get(identifier)):
                if missing_ok:
                    return
                raise self._not_found(identifier)
            if not self._may_change(identifier):
                discovered = identifier in self._discovered
                origin = "was listed by its provider" if discovered else "comes from the run config"
                raise ForbiddenError(
                    f"The {self.kind} '{identifier}' {origin} and is shared by every "
                    "API key; only an admin key can unregister it."
                )
            if identifier in self._discovered:  # held in memory only: nothing stored, no hook ran
                self._discovered.discard(identifier)
                del self._resources[identifier]
                self._holders.pop(identifier, None)
                return
            await self._unregister_hook(self.owner(resource), resource)
            del self._resources[identifier]
            self._holders.pop(identifier, None)
            self._configured.discard(identifier)
            await self._write(identifier, None, None)
