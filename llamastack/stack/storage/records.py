"""Typed records over the kv store: validated before every write, set aside when they no longer read.

Every stored resource, vector store, file and agent record goes through a `RecordStore`:

- `put` round-trips the candidate through its pydantic model (dump to JSON, parse it back) and
  writes only what parsed. A record that would not read back is refused with a 400 naming the
  field, and nothing is written.
- Reads parse with the same model. A stored record that no longer parses (written by an older
  version, edited by hand, damaged) is logged once and set aside: lists skip it, `require` answers
  404 saying so, and `keys` / `delete` still see it, so it can be removed over the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from ..errors import InvalidRecordError, StackError, UnreadableRecordError
from .kvstore import KVStore

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
        self, kv: KVStore, model: type[M], *, kind: str, prefix: str | None = None, label: str | None = None
    ) -> None:
        self.kv = kv
        self.model = model
        self.kind = kind
        self.prefix = f"{kind}:" if prefix is None else prefix
        self.label = label or kind.replace("_", " ")

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
        await self.kv.set(self.prefix + key, raw)
        return record

    async def delete(self, key: str) -> None:
        """Removes the stored record, readable or not."""
        await self.kv.delete(self.prefix + key)

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
