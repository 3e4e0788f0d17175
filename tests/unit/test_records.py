"""RecordStore: every write validated first, unreadable records set aside; ResourceTable on top of it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llamastack.stack.apis.models import Model
from llamastack.stack.apis.vector_stores import VectorStoreObject
from llamastack.stack.errors import NotFoundError
from llamastack.stack.routing.table import ResourceTable
from llamastack.stack.storage.kvstore import SqliteKVStore
from llamastack.stack.storage.records import InvalidRecordError, RecordStore, UnreadableRecordError


@pytest.fixture()
def kv(tmp_path: Path) -> SqliteKVStore:
    return SqliteKVStore(tmp_path / "kv.db")


def _store(kv: SqliteKVStore) -> RecordStore[VectorStoreObject]:
    return RecordStore(kv, VectorStoreObject, kind="vector_store")


async def test_put_refuses_an_instance_that_would_not_read_back(kv: SqliteKVStore) -> None:
    records = _store(kv)
    good = await records.put("vs_1", VectorStoreObject(id="vs_1", created_at=1, metadata={"a": 1}))
    # model_copy does not validate: this is how a null once reached the store.
    broken = good.model_copy(update={"metadata": None})
    with pytest.raises(InvalidRecordError) as err:
        await records.put("vs_1", broken)
    assert err.value.status_code == 400
    assert "metadata" in err.value.detail and "vs_1" in err.value.detail
    assert (await records.require("vs_1", lambda: NotFoundError("gone"))).metadata == {"a": 1}


async def test_put_validates_plain_dicts_and_reports_the_field(kv: SqliteKVStore) -> None:
    records = _store(kv)
    with pytest.raises(InvalidRecordError, match="created_at"):
        await records.put("vs_2", {"id": "vs_2", "created_at": "yesterday"})
    assert not await records.exists("vs_2")


async def test_unreadable_records_are_set_aside_logged_once_and_deletable(
    kv: SqliteKVStore, caplog: pytest.LogCaptureFixture
) -> None:
    records = _store(kv)
    await records.put("vs_ok", VectorStoreObject(id="vs_ok", created_at=1))
    await kv.set("vector_store:vs_null", '{"id": "vs_null", "created_at": 2, "metadata": null}')
    await kv.set("vector_store:vs_junk", "{not json")
    caplog.set_level(logging.WARNING, logger="llamastack.stack.storage.records")

    for _ in range(3):
        assert [r.id for r in await records.list()] == ["vs_ok"]
    assert await records.get("vs_null") is None
    set_aside = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(set_aside) == 2, set_aside  # once per record, however often it is read
    assert any("vs_null" in m and "metadata" in m for m in set_aside)

    with pytest.raises(UnreadableRecordError) as err:
        await records.require("vs_null", lambda: NotFoundError("missing"))
    assert err.value.status_code == 404 and "cannot be read" in err.value.detail
    with pytest.raises(NotFoundError, match="missing"):
        await records.require("vs_none", lambda: NotFoundError("missing"))

    assert await records.keys() == ["vs_junk", "vs_null", "vs_ok"]
    await records.delete("vs_null")
    await records.delete("vs_junk")
    assert await records.keys() == ["vs_ok"]


async def test_sub_prefixes_do_not_leak_into_each_other(kv: SqliteKVStore) -> None:
    stores = _store(kv)
    files = RecordStore(kv, VectorStoreObject, kind="vector_store_file")
    await stores.put("a", VectorStoreObject(id="a", created_at=1))
    await files.put("a:f", VectorStoreObject(id="f", created_at=1))
    assert await stores.keys() == ["a"]
    assert await files.keys("a:") == ["a:f"]


def _table(kv: SqliteKVStore, registered: list[str]) -> ResourceTable[Model]:
    async def register(_: object, model: Model) -> Model:
        registered.append(model.identifier)
        return model

    async def unregister(_: object, model: Model) -> None:
        registered.remove(model.identifier)

    return ResourceTable(
        kind="model",
        resource_class=Model,
        store=kv,
        owners={"p": object()},
        register_hook=register,
        unregister_hook=unregister,
        not_found=lambda ident: NotFoundError(f"Model '{ident}' not found."),
    )


async def test_resource_table_starts_with_a_corrupt_record_and_can_delete_it(kv: SqliteKVStore) -> None:
    registered: list[str] = []
    table = _table(kv, registered)
    await table.register(Model(identifier="good", provider_id="p", provider_resource_id="good"))
    await kv.set("model:bad", '{"identifier": "bad", "provider_id": null}')

    restarted = _table(kv, registered := [])
    await restarted.load([])  # must not raise
    assert [m.identifier for m in restarted.list()] == ["good"] and registered == ["good"]
    with pytest.raises(NotFoundError):
        restarted.get("bad")
    await restarted.unregister("bad")  # removes the stored record
    assert await restarted.records.keys() == ["good"]
    with pytest.raises(NotFoundError):
        await restarted.unregister("bad")
