"""The per-request registry sync on sqlite: skipped while no other connection has committed anything,
and a registration made through another connection to the file is taken in on the next request."""

from __future__ import annotations

import asyncio
from pathlib import Path

from llamastack.stack.apis.models import Model
from llamastack.stack.config import RunConfig
from llamastack.stack.resolver import Stack
from llamastack.stack.routing.models import ModelsTable
from llamastack.stack.routing.table import VERSION_PREFIX
from llamastack.stack.storage.kvstore import SqliteKVStore


class Provider:
    async def register_model(self, model: Model) -> Model:
        return model

    async def unregister_model(self, model: Model) -> None:
        return None


async def _stack(store: SqliteKVStore) -> Stack:
    models = ModelsTable(store, {"p": Provider()})  # type: ignore[dict-item]
    await models.table.load([])
    return Stack(run_config=RunConfig(image_name="t", providers={}), store=store, models=models)


def _count_registry_reads(store: SqliteKVStore) -> list[int]:
    """Counts the reads of the registries' versions on ``store``: the one-element list's number."""
    reads = [0]
    original = store.items_with_prefix

    async def counted(prefix: str) -> list[tuple[str, str]]:
        reads[0] += prefix == VERSION_PREFIX
        return await original(prefix)

    store.items_with_prefix = counted  # type: ignore[method-assign]
    return reads


async def test_data_version_counts_only_other_connections_commits(tmp_path: Path) -> None:
    a, b = SqliteKVStore(tmp_path / "s.db"), SqliteKVStore(tmp_path / "s.db")
    try:
        before = await a.data_version()
        assert before is not None
        await a.set("k", "1")
        assert await a.data_version() == before  # its own write
        await b.set("k", "2")
        assert await a.data_version() != before
    finally:
        await a.close()
        await b.close()


async def test_a_registration_through_another_connection_is_served_after_the_next_sync(
    tmp_path: Path,
) -> None:
    store_a, store_b = SqliteKVStore(tmp_path / "s.db"), SqliteKVStore(tmp_path / "s.db")
    try:
        a, b = await _stack(store_a), await _stack(store_b)
        reads = _count_registry_reads(store_a)
        await a.sync_registries()
        await a.sync_registries()
        assert reads[0] == 1  # nothing committed elsewhere since the first look: no second read
        assert b.models is not None and a.models is not None
        await b.models.table.register(Model(identifier="x", provider_id="p", provider_resource_id="x"))
        await a.sync_registries()
        assert reads[0] == 2 and a.models.table.find("x") is not None
        await a.models.table.register(Model(identifier="y", provider_id="p", provider_resource_id="y"))
        await a.sync_registries()
        assert reads[0] == 2  # its own registration: already served, nothing to read
        await b.models.table.unregister("x")
        await a.sync_registries()
        assert a.models.table.find("x") is None
    finally:
        await store_a.close()
        await store_b.close()


async def test_a_write_of_its_own_under_way_does_not_make_the_sync_read_the_registries(
    tmp_path: Path,
) -> None:
    """The connection busy with this server's own write (a stored answer on a worker thread) is waited
    for, not taken as "something may have changed": no read of the registries for it."""
    store = SqliteKVStore(tmp_path / "s.db")
    try:
        stack = await _stack(store)
        reads = _count_registry_reads(store)
        await stack.sync_registries()
        assert reads[0] == 1
        writes = [asyncio.ensure_future(store.set(f"k{i}", "v" * 1000)) for i in range(20)]
        for _ in range(20):
            await stack.sync_registries()
            await asyncio.sleep(0)
        await asyncio.gather(*writes)
        assert reads[0] == 1
    finally:
        await store.close()
