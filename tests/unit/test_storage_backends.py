"""The storage seam's contract, on both backends: sqlite and a real PostgreSQL (tests/postgres_server.py).

Every test runs against each backend; "two replicas" are two independently opened stores on one
database (two sqlite connections to one file, two asyncpg pools to one PostgreSQL database).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from llamastack.stack.apis.models import Model
from llamastack.stack.config import StorageConfig, parse_run_config
from llamastack.stack.errors import ConflictError, NotFoundError, StorageUnavailableError
from llamastack.stack.routing.table import VERSION_PREFIX, ResourceTable
from llamastack.stack.storage import KVStore, RecordStore, open_storage
from llamastack.stack.storage.migrations import MIGRATIONS
from llamastack.stack.storage.replicas import ReplicaLeases

from postgres_server import PostgresServer

Opener = Callable[[], Awaitable[KVStore]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens another store on the same database (a replica's), closed after the test."""
    if request.param == "sqlite":
        config = StorageConfig(type="sqlite", db_path=str(tmp_path / "state.db"))
    else:
        config = StorageConfig.model_validate({"url": request.getfixturevalue("postgres_url")})
    opened: list[KVStore] = []

    async def open_one() -> KVStore:
        store = await open_storage(config)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


class Counter(BaseModel):
    id: str
    n: int = 0
    team: str | None = None


def _conflict() -> ConflictError:
    return ConflictError("taken")


async def test_get_set_delete_and_ordered_prefixes(opener: Opener) -> None:
    kv = await opener()
    assert await kv.get("a") is None
    for key in ("p:b", "p:a", "q:a", "p:c"):
        await kv.set(key, key.upper())
    await kv.set("p:a", "again")
    assert await kv.get("p:a") == "again"
    assert await kv.items_with_prefix("p:") == [("p:a", "again"), ("p:b", "P:B"), ("p:c", "P:C")]
    assert await kv.values_with_prefix("q:") == ["Q:A"]
    await kv.delete("p:b")
    await kv.delete("never-there")
    assert [k for k, _ in await kv.items_with_prefix("p:")] == ["p:a", "p:c"]


async def test_namespaces_do_not_see_each_other(opener: Opener) -> None:
    root = await opener()
    agents, files = root.namespaced("agents/agents"), root.namespaced("files/localfs")
    await agents.set("x", "1")
    await files.set("x", "2")
    assert (await agents.get("x"), await files.get("x"), await root.get("x")) == ("1", "2", None)
    assert await agents.items_with_prefix("") == [("x", "1")]
    assert await root.get("agents/agents:x") == "1"
    await agents.close()  # a view closes nothing
    assert await root.get("files/localfs:x") == "2"


async def test_insert_if_absent_has_one_winner_across_replicas(opener: Opener) -> None:
    one, two = await opener(), await opener()
    stores = [one, two] * 10
    won = await asyncio.gather(*(s.insert_if_absent("model:m", f"v{i}") for i, s in enumerate(stores)))
    assert sum(won) == 1
    assert await two.get("model:m") == f"v{won.index(True)}"


async def test_a_failed_transaction_writes_nothing(opener: Opener) -> None:
    kv = await opener()
    await kv.set("k:1", "old")
    with pytest.raises(RuntimeError):
        async with kv.transaction() as tx:
            await tx.set("k:1", "new")
            await tx.set("k:2", "new")
            assert await tx.get("k:2") == "new"  # a transaction reads its own writes
            raise RuntimeError("boom")
    assert await kv.get("k:1") == "old" and await kv.get("k:2") is None
    async with kv.transaction() as tx:
        await tx.set("k:1", "new")
        await tx.delete("k:2")
        assert await tx.insert_if_absent("k:3", "x") and not await tx.insert_if_absent("k:3", "y")
    assert await kv.items_with_prefix("k:") == [("k:1", "new"), ("k:3", "x")]


async def test_concurrent_updates_from_two_replicas_lose_nothing(opener: Opener) -> None:
    one, two = await opener(), await opener()
    records = [RecordStore(kv, Counter, kind="counter") for kv in (one, two)]
    await records[0].insert("c", Counter(id="c"), _conflict)

    def bump(c: Counter) -> None:
        c.n += 1

    gone = lambda: NotFoundError("gone")  # noqa: E731
    await asyncio.gather(*(records[i % 2].update("c", bump, gone) for i in range(20)))
    assert (await records[1].require("c", lambda: NotFoundError("gone"))).n == 20


async def test_insert_conflicts_and_put_many_is_atomic(opener: Opener) -> None:
    records = RecordStore(await opener(), Counter, kind="counter")
    await records.insert("a", {"id": "a"}, _conflict)
    with pytest.raises(ConflictError):
        await records.insert("a", {"id": "a", "n": 2}, _conflict)
    with pytest.raises(Exception, match="n"):  # the second is invalid: neither is written
        await records.put_many([("b", {"id": "b"}), ("c", {"id": "c", "n": "many"})])
    assert [k for k, _ in await records.items()] == ["a"]
    await records.put_many([("b", {"id": "b"}), ("c", {"id": "c"})])
    await records.delete_many(["a", "b"])
    assert [k for k, _ in await records.items()] == ["c"]


async def test_set_many_writes_every_pair_in_one_commit_or_none(opener: Opener) -> None:
    kv = (await opener()).namespaced("ns")
    await kv.set_many([("k1", "one"), ("k2", "two")])
    await kv.set_many([("k2", "second"), ("k3", "three")])  # an existing key is replaced
    assert await kv.items_with_prefix("k") == [("k1", "one"), ("k2", "second"), ("k3", "three")]
    with pytest.raises(Exception):  # noqa: B017 - the backends' own error for a NULL value
        await kv.set_many([("k4", "four"), ("k5", None)])  # type: ignore[list-item]
    assert await kv.get("k4") is None  # the valid pair before the failing one was not kept
    other = await opener()  # another replica sees the batch
    assert await other.get("ns:k3") == "three"


async def test_cursor_pages_skip_unreadable_records(opener: Opener, caplog: pytest.LogCaptureFixture) -> None:
    kv = await opener()
    records = RecordStore(kv, Counter, kind="counter")
    await records.put_many([(f"{i:02d}", {"id": f"{i:02d}"}) for i in range(7)])
    await kv.set("counter:03", "{not json")
    await kv.set("counterfeit:00", "{}")  # shares the prefix's first letters only
    pages, after = [], None
    with caplog.at_level(logging.WARNING):
        while True:
            page, after = await records.page(after=after, limit=3)
            pages.append([k for k, _ in page])
            if after is None:
                break
    assert pages == [["00", "01", "02"], ["04", "05", "06"]]
    assert [k for k, _ in await kv.items_after("counter:", "counter:04", 10)] == ["counter:05", "counter:06"]


async def test_indexes_follow_the_records(opener: Opener) -> None:
    records = RecordStore(await opener(), Counter, kind="counter", indexes={"team": lambda c: c.team})
    await records.put("a", Counter(id="a", team="red:1"))
    await records.insert("b", Counter(id="b", team="red:1"), _conflict)
    await records.put("c", Counter(id="c", team="red"))
    assert await records.keys_by("team", "red:1") == ["a", "b"]
    assert await records.keys_by("team", "red") == ["c"]

    def move(c: Counter) -> None:
        c.team = "blue"

    await records.update("a", move, lambda: NotFoundError("gone"))
    await records.delete("b")
    assert await records.keys_by("team", "red:1") == []
    assert await records.keys_by("team", "blue") == ["a"]


async def test_migrations_are_applied_once_even_when_replicas_start_together(opener: Opener) -> None:
    stores = await asyncio.gather(*(opener() for _ in range(4)))
    assert [await s.get("nothing") for s in stores] == [None] * 4
    ledger = await _ledger(stores[0])
    assert ledger == [m.name for m in MIGRATIONS]


async def _ledger(store: KVStore) -> list[str]:
    from llamastack.stack.storage.kvstore import SqliteKVStore

    if isinstance(store, SqliteKVStore):
        rows = await asyncio.to_thread(store.db.run, "SELECT name FROM schema_migrations ORDER BY name")
        return [str(r[0]) for r in rows]
    from llamastack.stack.storage.postgres import PostgresKVStore

    assert isinstance(store, PostgresKVStore)
    rows = await store._pool.call(lambda c: c.fetch("SELECT name FROM schema_migrations ORDER BY name"))
    return [str(r["name"]) for r in rows]


def test_migration_names_are_unique_and_in_order() -> None:
    names = [m.name for m in MIGRATIONS]
    assert names == sorted(names) and len(set(names)) == len(names)


# --- configuration --------------------------------------------------------------------------------


def test_the_database_url_is_parsed_and_its_password_never_shows() -> None:
    config = StorageConfig.model_validate(
        {"url": "postgresql://ann:s3cr%40t@db.internal:6543/stack?sslmode=require"}
    )
    assert (config.type, config.host, config.port, config.database, config.user, config.sslmode) == (
        "postgres",
        "db.internal",
        6543,
        "stack",
        "ann",
        "require",
    )
    assert config.password is not None and config.password.get_secret_value() == "s3cr@t"
    shown_forms = (repr(config), str(config), config.model_dump_json(), str(config.model_dump()))
    for shown in (*shown_forms, config.describe()):
        assert "s3cr" not in shown
    assert config.describe() == "postgresql://ann@db.internal:6543/stack"


@pytest.mark.parametrize(
    ("url", "db_path"),
    [
        ("sqlite:////var/lib/ls/state.db", "/var/lib/ls/state.db"),
        ("sqlite:///~/ls.db", "~/ls.db"),
        ("sqlite:///rel.db", "rel.db"),
    ],
)
def test_sqlite_urls(url: str, db_path: str) -> None:
    assert StorageConfig.model_validate({"url": url}).db_path == db_path


@pytest.mark.parametrize("url", ["mysql://x@h/db", "postgresql://u:p@h:notaport/db", "nonsense", "sqlite://"])
def test_bad_urls_are_config_errors_that_hide_the_password(url: str) -> None:
    from llamastack.stack.errors import ConfigError

    raw = {"image_name": "t", "providers": {}, "storage": {"url": url}}
    with pytest.raises(ConfigError) as err:
        parse_run_config(raw, {})
    assert "storage" in err.value.detail and ":p@" not in err.value.detail


def test_the_knob_reaches_every_bundled_distribution(tmp_path: Path) -> None:
    from llamastack.stack.config import load_run_config

    dists = Path(__file__).parents[2] / "llamastack" / "distributions"
    runs = sorted(dists.glob("*/run.yaml"))
    assert runs
    for run in runs:
        default = load_run_config(run, {"LLAMA_STACK_STATE_DIR": str(tmp_path), "INFERENCE_MODEL": "m"})
        default = default.storage_config()
        assert (default.type, default.db_path) == ("sqlite", str(tmp_path / "registry.db"))
        env = {"LLAMA_STACK_DATABASE_URL": "postgresql://u:pw@127.0.0.1:5/d", "INFERENCE_MODEL": "m"}
        pg = load_run_config(run, env).storage_config()
        assert (pg.type, pg.host, pg.port, pg.database) == ("postgres", "127.0.0.1", 5, "d"), run


# --- PostgreSQL only ------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_nul_characters_are_a_400_not_a_500(postgres_url: str) -> None:
    from llamastack.stack.errors import BadRequestError

    kv = await open_storage(StorageConfig.model_validate({"url": postgres_url}))
    try:
        with pytest.raises(BadRequestError):
            await kv.set("model:a\x00b", "{}")
    finally:
        await kv.close()


@pytest.mark.postgres
async def test_a_database_restart_gives_503_then_reconnects_by_itself(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    kv = await open_storage(StorageConfig.model_validate({"url": postgres_url, "connect_timeout_s": 2}))
    try:
        await kv.set("k", "before")
        postgres_server.stop()
        with pytest.raises(StorageUnavailableError) as err:
            await kv.get("k")
        assert err.value.status_code == 503 and err.value.headers["Retry-After"]
        postgres_server.start()
        assert await kv.get("k") == "before"  # the pool reconnected on its own
        await kv.set("k", "after")
        assert await kv.get("k") == "after"
    finally:
        await kv.close()


@pytest.mark.postgres
async def test_an_unreachable_database_stops_start_up_with_a_clear_message(postgres_url: str) -> None:
    from llamastack.stack.errors import ConfigError

    config = StorageConfig.model_validate({"url": postgres_url, "connect_timeout_s": 2})
    config = config.model_copy(update={"port": 1})  # nothing listens there
    with pytest.raises(ConfigError) as err:
        await open_storage(config)
    assert "Cannot reach the database" in err.value.detail
    assert config.password is not None and config.password.get_secret_value() not in err.value.detail


@pytest.mark.postgres
async def test_a_replicas_lease_is_renewed_and_lapses_once_it_stops(postgres_url: str) -> None:
    config = StorageConfig.model_validate({"url": postgres_url})
    kv_a, kv_b = await open_storage(config), await open_storage(config)
    a, b = ReplicaLeases(kv_a, lease_s=1), ReplicaLeases(kv_b, lease_s=1)
    try:
        assert a.shared and b.shared  # PostgreSQL: other replicas may use it
        await a.start()
        await b.start()
        await asyncio.sleep(1.5)  # longer than the lease: only the renewals keep them
        assert await b.alive(a.replica_id, 0) and (await a.judge())(b.replica_id, 0)
        await kv_a.close()  # a is cut off (as if killed): its lease is no longer renewed
        await asyncio.sleep(1.2)
        assert not await b.alive(a.replica_id, 0) and not (await b.judge())(a.replica_id, 0)
        assert await b.alive(b.replica_id, 0)
    finally:
        await a.stop()
        await b.stop()
        await kv_b.close()
    kv = await open_storage(config)
    try:  # b gave its lease up when it stopped
        assert [r.replica_id for r in await ReplicaLeases(kv).records.list()] == [a.replica_id]
    finally:
        await kv.close()


# --- registries on a shared database --------------------------------------------------------------


def _models_table(kv: KVStore, registered: list[str]) -> ResourceTable[Model, object]:
    async def register(_: object, model: Model) -> Model:
        await asyncio.sleep(0.01)  # a provider hook takes time: both replicas are inside it at once
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


async def _versions(kv: KVStore) -> dict[str, str]:
    return dict(await kv.items_with_prefix(VERSION_PREFIX))


async def test_two_replicas_registering_one_id_give_one_winner_and_a_409(opener: Opener) -> None:
    hooks_a: list[str] = []
    hooks_b: list[str] = []
    a, b = _models_table(await opener(), hooks_a), _models_table(await opener(), hooks_b)
    await a.load([])
    await b.load([])
    model = Model(identifier="m", provider_id="p", provider_resource_id="m")
    results = await asyncio.gather(a.register(model), b.register(model), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "Model"]
    assert sorted([*hooks_a, *hooks_b]) == ["m"]  # the loser never ran its provider's hook
    loser = b if isinstance(results[1], ConflictError) else a
    assert loser.find("m") is None
    await loser.sync((await _versions(loser.store)).get(loser.version_key))
    assert loser.find("m") is not None  # ... and serves the winner's once it syncs


async def test_a_replica_takes_in_what_another_registered_and_unregistered(opener: Opener) -> None:
    hooks_a: list[str] = []
    hooks_b: list[str] = []
    a, b = _models_table(await opener(), hooks_a), _models_table(await opener(), hooks_b)
    await a.load([])
    await b.load([])
    await a.register(Model(identifier="x", provider_id="p", provider_resource_id="x"))
    version = (await _versions(b.store)).get(b.version_key)
    await b.sync(version)
    assert [m.identifier for m in b.list()] == ["x"] and hooks_b == ["x"]
    await b.sync(version)  # nothing changed since: no second registration with the provider
    assert hooks_b == ["x"]
    await a.unregister("x")
    await b.sync((await _versions(b.store)).get(b.version_key))
    assert b.list() == [] and hooks_a == []


# --- an older version's own files -----------------------------------------------------------------


async def test_an_older_versions_files_db_is_imported_once_and_its_files_kept(tmp_path: Path) -> None:
    """Before the stack's database, localfs kept its metadata in <storage_dir>/files.db. Without the
    import, the start-up clean-up would take those files' content for leftovers."""
    from llamastack.providers.files.localfs.config import LocalFSFilesConfig
    from llamastack.providers.files.localfs.provider import LocalFSFiles
    from llamastack.stack.apis.files import OpenAIFilePurpose
    from llamastack.stack.storage.kvstore import SqliteKVStore

    folder = tmp_path / "files"
    old = LocalFSFiles(LocalFSFilesConfig(storage_dir=str(folder)))  # no stack: its own files.db
    await old.initialize()
    upload = await old.begin_upload()
    await upload.write(b"kept across the upgrade")
    stored = await upload.commit(
        filename="a.txt", purpose=OpenAIFilePurpose.assistants, content_type="text/plain"
    )
    await old.shutdown()

    root = SqliteKVStore(tmp_path / "registry.db")
    try:
        for _ in range(2):  # the second start finds the import done
            new = LocalFSFiles(LocalFSFilesConfig(storage_dir=str(folder)), root.namespaced("files/localfs"))
            await new.initialize()
            assert [f.id for f in await new.list_all()] == [stored.id]
            assert await new.read(stored.id) == b"kept across the upgrade"
            await new.shutdown()
        assert len([k for k, _ in await root.items_with_prefix("files/localfs:legacy_import:")]) == 1
    finally:
        await root.close()


def test_the_knob_applies_to_a_run_config_without_a_storage_block() -> None:
    raw = {"image_name": "custom", "providers": {}}
    url = "postgresql://u:pw@db:5432/d"
    assert parse_run_config(raw, {"LLAMA_STACK_DATABASE_URL": url}).storage_config().host == "db"
    assert parse_run_config(raw, {}).storage_config().type == "sqlite"
    explicit = {**raw, "storage": {"type": "sqlite", "db_path": "/x.db"}}  # a block wins over the knob
    assert parse_run_config(explicit, {"LLAMA_STACK_DATABASE_URL": url}).storage_config().db_path == "/x.db"
