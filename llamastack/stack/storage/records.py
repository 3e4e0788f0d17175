"""Typed records over the kv store: validated before every write, set aside when they no longer read.

Every stored resource, vector store, file and agent record goes through a `RecordStore`:

- `put` round-trips the candidate through its pydantic model (dump to JSON, parse it back) and
  writes only what parsed. A record that would not read back is refused with a 400 naming the
  field, and nothing is written.
- `insert` writes only if the key is free (ConflictError otherwise: one winner among replicas),
  `update` is a read-modify-write in one transaction, `put_many` / `delete_many` write several
  records atomically, and `page` reads a cursor page in key order.
- `indexes` (name -> the value a record is found by) keep `idx:<kind>:<name>:<value>:<key>`
  entries, written in the same transaction as the record; `keys_by` answers from them.
- Reads parse with the same model. A stored record that no longer parses (written by an older
  version, edited by hand, damaged) is logged once and set aside: lists skip it, `require` answers
  404 saying so, and `keys` / `delete` still see it, so it can be removed over the API.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from ..errors import InvalidRecordError, StackError, UnreadableRecordError
from .kvstore import KVStore, KVTransaction

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# (kind, key, stored text) already logged, so a record read by every list call is reported once.
_reported: set[tuple[str, str, int]] = set()


def describe(exc: ValidationError) -> str:
    """The validation problems as `field: message`, without the values (they may be private)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "record"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts[:3]) + (f" (and {len(parts) - 3} more)" if len(parts) > 3 else "")


class RecordStore(Generic[M]):
    """Records of one model under `<kind>:` keys (or `prefix`) of a kv store."""

    def __init__(
        self,
        kv: KVStore,
        model: type[M],
        *,
        kind: str,
        prefix: str | None = None,
        label: str | None = None,
        indexes: Mapping[str, Callable[[M], str | None]] | None = None,
    ) -> None:
        self.kv = kv
        self.model = model
        self.kind = kind
        self.prefix = f"{kind}:" if prefix is None else prefix
        self.label = label or kind.replace("_", " ")
        self.indexes = dict(indexes or {})

    def _index_keys(self, key: str, record: M) -> list[str]:
        keys = []
        for name, value_of in self.indexes.items():
            value = value_of(record)
            if value is not None:
                keys.append(f"idx:{self.kind}:{name}:{quote(value, safe='')}:{key}")
        return keys

    async def _write(self, tx: KVTransaction, key: str, record: M | None, raw: str | None) -> None:
        """Writes (or, with record None, deletes) a record and keeps its index entries in step."""
        if self.indexes:
            old_raw = await tx.get(self.prefix + key)
            old = self._parse(key, old_raw) if old_raw is not None else None
            if old is not None and not isinstance(old, str):
                for index_key in self._index_keys(key, old):
                    await tx.delete(index_key)
            if record is not None:
                for index_key in self._index_keys(key, record):
                    await tx.set(index_key, key)
        if record is None or raw is None:
            await tx.delete(self.prefix + key)
        else:
            await tx.set(self.prefix + key, raw)

    # --- writes --------------------------------------------------------------------------------

    def validate(self, key: str, candidate: M | Mapping[str, Any]) -> tuple[M, str]:
        """The record as it will read back, and its JSON; InvalidRecordError if it would not."""
        try:
            if isinstance(candidate, BaseModel):
                # An instance may hold anything (model_copy and attribute writes skip validation).
                raw = candidate.model_dump_json(warnings=False)
            else:
                raw = self.model.model_validate(dict(candidate)).model_dump_json(warnings=False)
            return self.model.model_validate_json(raw), raw
        except ValidationError as exc:
            problem = describe(exc)
        except PydanticSerializationError as exc:
            problem = f"not serialisable ({exc})"
        log.warning("Refused to store %s '%s': %s", self.kind, key, problem)
        raise InvalidRecordError(self.label, key, problem)

    async def put(self, key: str, candidate: M | Mapping[str, Any]) -> M:
        record, raw = self.validate(key, candidate)
        if self.indexes:
            async with self.kv.transaction() as tx:
                await self._write(tx, key, record, raw)
        else:
            await self.kv.set(self.prefix + key, raw)
        return record

    async def insert(
        self, key: str, candidate: M | Mapping[str, Any], conflict: Callable[[], StackError]
    ) -> M:
        """Writes a new record; `conflict()` if the key is taken (by any replica, even concurrently)."""
        record, raw = self.validate(key, candidate)
        async with self.kv.transaction() as tx:
            if not await tx.insert_if_absent(self.prefix + key, raw):
                raise conflict()
            for index_key in self._index_keys(key, record):
                await tx.set(index_key, key)
        return record

    async def update(self, key: str, change: Callable[[M], object], not_found: Callable[[], StackError]) -> M:
        """Applies `change` to the stored record and writes it back in one transaction: concurrent
        updates (from this process or another replica) apply one after the other, none is lost."""
        async with self.kv.transaction() as tx:
            raw = await tx.get(self.prefix + key)
            if raw is None:
                raise not_found()
            parsed = self._parse(key, raw)
            if isinstance(parsed, str):
                raise UnreadableRecordError(self.label, key, parsed)
            change(parsed)
            record, new_raw = self.validate(key, parsed)
            await self._write(tx, key, record, new_raw)
        return record

    async def put_many(self, items: Iterable[tuple[str, M | Mapping[str, Any]]]) -> list[M]:
        """Writes all the records or none (each validated before anything is written)."""
        checked = [(key, *self.validate(key, candidate)) for key, candidate in items]
        async with self.kv.transaction() as tx:
            for key, record, raw in checked:
                await self._write(tx, key, record, raw)
        return [record for _, record, _ in checked]

    async def delete(self, key: str) -> None:
        """Removes the stored record, readable or not."""
        if self.indexes:
            async with self.kv.transaction() as tx:
                await self._write(tx, key, None, None)
        else:
            await self.kv.delete(self.prefix + key)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Removes all the records or none."""
        async with self.kv.transaction() as tx:
            for key in keys:
                await self._write(tx, key, None, None)

    # --- reads ---------------------------------------------------------------------------------

    def _parse(self, key: str, raw: str) -> M | str:
        """The record, or what is wrong with it (logged once)."""
        try:
            return self.model.model_validate_json(raw)
        except ValidationError as exc:
            problem = describe(exc)
        mark = (self.kind, key, hash(raw))
        if mark not in _reported:
            _reported.add(mark)
            log.warning(
                "Stored %s '%s' does not validate and is set aside (%s). "
                "It is left out of lists and can be deleted over the API.",
                self.kind,
                key,
                problem,
            )
        return problem

    async def get(self, key: str) -> M | None:
        """The record; None if there is none or it cannot be read."""
        raw = await self.kv.get(self.prefix + key)
        if raw is None:
            return None
        parsed = self._parse(key, raw)
        return None if isinstance(parsed, str) else parsed

    async def require(self, key: str, not_found: Callable[[], StackError]) -> M:
        """The record; `not_found()` if there is none, UnreadableRecordError if it cannot be read."""
        raw = await self.kv.get(self.prefix + key)
        if raw is None:
            raise not_found()
        parsed = self._parse(key, raw)
        if isinstance(parsed, str):
            raise UnreadableRecordError(self.label, key, parsed)
        return parsed

    async def exists(self, key: str) -> bool:
        """Whether anything is stored under the key, readable or not."""
        return await self.kv.get(self.prefix + key) is not None

    async def items(self, sub_prefix: str = "") -> list[tuple[str, M]]:
        """(key, record) in key order; unreadable records are left out."""
        found = []
        for full_key, raw in await self.kv.items_with_prefix(self.prefix + sub_prefix):
            key = full_key[len(self.prefix) :]
            parsed = self._parse(key, raw)
            if not isinstance(parsed, str):
                found.append((key, parsed))
        return found

    async def keys(self, sub_prefix: str = "") -> list[str]:
        """Every stored key under the prefix, unreadable records included (for deletes)."""
        rows = await self.kv.items_with_prefix(self.prefix + sub_prefix)
        return [full_key[len(self.prefix) :] for full_key, _ in rows]

    async def list(self, sub_prefix: str = "") -> list[M]:
        return [record for _, record in await self.items(sub_prefix)]

    async def page(
        self, sub_prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> tuple[builtins.list[tuple[str, M]], str | None]:
        """Up to `limit` readable (key, record) pairs after the key `after`, in key order, and the
        cursor for the next page (None on the last one). Unreadable records are skipped."""
        found: builtins.list[tuple[str, M]] = []
        cursor = after
        while len(found) < limit:
            want = limit - len(found)
            rows = await self.kv.items_after(self.prefix + sub_prefix, _full(self.prefix, cursor), want + 1)
            for full_key, raw in rows[:want]:
                key = full_key[len(self.prefix) :]
                cursor = key
                parsed = self._parse(key, raw)
                if not isinstance(parsed, str):
                    found.append((key, parsed))
            if len(rows) <= want:
                return found, None
        return found, cursor

    async def keys_by(self, index: str, value: str) -> builtins.list[str]:
        """The keys of the records whose `index` is `value`, in key order."""
        if index not in self.indexes:
            raise KeyError(f"{self.kind} has no index '{index}'")
        prefix = f"idx:{self.kind}:{index}:{quote(value, safe='')}:"
        return [key for _, key in await self.kv.items_with_prefix(prefix)]


def _full(prefix: str, key: str | None) -> str | None:
    return None if key is None else prefix + key
