"""Who is asking, and which records they may see.

With API keys configured, the auth middleware sets the request's principal: a stable id derived
from the key (never the key itself) and whether it is an admin key. Records created over the API
remember the principal that created them; other principals get the same 404 as for a missing id.

- no principal (auth off, start-up, internal work): everything is visible, as without auth;
- a record without an owner (from the run config, or created while auth was off) is shared;
- an admin sees every record.

A store applies this in one line per operation::

    owners = OwnerIndex(kv, "chat_completion")
    await owners.claim(completion.id)                        # on create
    await owners.check(completion_id, lambda: NotFound(...))  # on get / update / delete
    visible = await owners.visible(items, key=lambda c: c.id) # on list
    await owners.release(completion_id)                       # on delete
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from .storage.kvstore import KVStore, KVTransaction

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Principal:
    id: str  # e.g. "key-3f9a0c1d2e4b5a6f": a sha256 prefix of the key
    admin: bool = False


_current: ContextVar[Principal | None] = ContextVar("llamastack_principal", default=None)


def principal_id_for(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def current() -> Principal | None:
    return _current.get()


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Runs a block as ``principal`` (the middleware does this per request)."""
    token = _current.set(principal)
    try:
        yield
    finally:
        _current.reset(token)


def owner_for_new_record() -> str | None:
    """The owner to record for something created now: the caller's id, or None without auth."""
    principal = _current.get()
    return principal.id if principal is not None else None


def can_see(owner: str | None) -> bool:
    principal = _current.get()
    return principal is None or principal.admin or owner is None or owner == principal.id


def may_manage_run_config() -> bool:
    """Resources from the run config may be replaced or removed only by an admin, or without auth."""
    principal = _current.get()
    return principal is None or principal.admin


def filter_visible(items: list[T], owner_of: Callable[[T], str | None]) -> list[T]:
    if _current.get() is None:
        return items
    return [item for item in items if can_see(owner_of(item))]


class OwnerIndex:
    """Which principal created each record of one kind, kept in the records' own kv store under
    ``owner:<kind>:<id>``. Write the owner before the record and remove it after the record, so a
    crash in between leaves at most an unused owner entry, never an unowned record."""

    def __init__(self, store: KVStore, kind: str) -> None:
        self.store = store
        self.prefix = f"owner:{kind}:"

    async def claim(self, record_id: str) -> None:
        """Records the caller as the owner of a record about to be written."""
        await self.set(record_id, owner_for_new_record())

    async def set(self, record_id: str, owner: str | None) -> None:
        if owner is None:
            await self.store.delete(self.prefix + record_id)  # a leftover must not own a new record
        else:
            await self.store.set(*self.row(record_id, owner))

    def row(self, record_id: str, owner: str) -> tuple[str, str]:
        """The (key, value) that records `owner` for a record, for a batch write (`set_many`)."""
        return self.prefix + record_id, json.dumps({"id": record_id, "owner": owner})

    async def set_in(self, tx: KVTransaction, record_id: str, owner: str | None) -> None:
        """`set`, as part of a transaction on the same store."""
        if owner is None:
            await tx.delete(self.prefix + record_id)
        else:
            await tx.set(*self.row(record_id, owner))

    async def owner(self, record_id: str) -> str | None:
        raw = await self.store.get(self.prefix + record_id)
        return json.loads(raw)["owner"] if raw else None

    async def all(self) -> dict[str, str]:
        entries = [json.loads(raw) for raw in await self.store.values_with_prefix(self.prefix)]
        return {e["id"]: e["owner"] for e in entries}

    async def check(self, record_id: str, not_found: Callable[[], Exception]) -> None:
        """Raises ``not_found()`` when the caller may not see the record (exactly as if it were missing)."""
        principal = _current.get()
        if principal is None or principal.admin:
            return
        if not can_see(await self.owner(record_id)):
            raise not_found()

    async def visible(self, items: list[T], key: Callable[[T], str]) -> list[T]:
        principal = _current.get()
        if principal is None or principal.admin:
            return items
        owners = await self.all()
        return [item for item in items if can_see(owners.get(key(item)))]

    async def release(self, record_id: str) -> None:
        await self.store.delete(self.prefix + record_id)
