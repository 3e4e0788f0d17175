"""A small async key-value store for state that must survive a restart.

One backend holds all of the stack's state: sqlite (the default, one file under the state dir) or
PostgreSQL (storage/postgres.py, shared by several replicas). Every part of the stack gets a
namespaced view of it (`namespaced("agents/agents")`), whose keys are prefixed so parts never see
each other's records.

Besides get / set / delete and ordered prefix scans, a store offers what several writers need:
`insert_if_absent` (one winner when two create the same key), `items_after` (cursor pages in key
order) and `transaction()`, where every read and write commits together or not at all (and, in
PostgreSQL, a key read in it stays locked against other writers until it ends).

sqlite calls run in a worker thread so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

from ..config import KVStoreConfig
from ..errors import ConfigError
from .migrations import apply_sqlite

# Keys in [prefix, prefix + U+FFFF) share the prefix; the primary key's index answers the range.
_END = "\uffff"


class KVTransaction(Protocol):
    """The reads and writes of one transaction (keys relative to the store it was opened on)."""

    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def insert_if_absent(self, key: str, value: str) -> bool: ...
    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]: ...


class KVStore(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def values_with_prefix(self, prefix: str) -> list[str]: ...
    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]: ...
    async def close(self) -> None: ...

    async def insert_if_absent(self, key: str, value: str) -> bool:
        """Writes the value only if the key has none; whether it did (False: someone else's is there)."""
        ...

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        """Writes every (key, value) pair in one commit: all of them or, on an error, none."""
        ...

    async def items_after(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (key, value) pairs under the prefix with keys after `after`, in key order."""
        ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[KVTransaction]: ...

    def namespaced(self, namespace: str) -> KVStore:
        """A view of this store whose keys live under `<namespace>:`; closing it closes nothing."""
        ...


def _enable_wal(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Switches to WAL. On a new file, processes opening it together may get "database is locked" at
    once (changing the journal mode does not wait on the busy timeout), so this retries a while."""
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


class _SqliteDB:
    """One sqlite connection, shared by every namespaced view of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()  # one statement at a time on the connection
        # Held by a transaction for its whole length, and by every statement outside one, so no
        # statement of another task lands in the middle of a transaction.
        self.tx_lock = asyncio.Lock()
        # timeout: another process holding the write lock is waited for, not an error.
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        _enable_wal(self.conn)
        # Every commit reaches the disk before the call returns: an acknowledged write survives a
        # crash of the process (and of the machine), whatever the build's default is.
        self.conn.execute("PRAGMA synchronous=FULL")
        apply_sqlite(self.conn)
        self.closed = False

    def run(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def changed(self, sql: str, params: tuple[object, ...]) -> int:
        with self.lock:
            return self.conn.execute(sql, params).rowcount

    def run_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """One statement over many rows, in one transaction (one commit, one sync to disk)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(sql, rows)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.conn.close()


_GET = "SELECT value FROM kvstore WHERE key = ?"
_SET = "INSERT INTO kvstore (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
_INSERT = "INSERT INTO kvstore (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING"
_DELETE = "DELETE FROM kvstore WHERE key = ?"
_RANGE = "SELECT key, value FROM kvstore WHERE key >= ? AND key < ? ORDER BY key"
_PAGE = "SELECT key, value FROM kvstore WHERE key >= ? AND key < ? AND key > ? ORDER BY key LIMIT ?"


class _SqliteOps:
    """The statements, on a connection, with this view's prefix; `_exec` decides the locking."""

    prefix: str
    db: _SqliteDB

    async def _exec(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        raise NotImplementedError

    async def _exec_changed(self, sql: str, params: tuple[object, ...]) -> int:
        raise NotImplementedError

    async def get(self, key: str) -> str | None:
        rows = await self._exec(_GET, (self.prefix + key,))
        return str(rows[0][0]) if rows else None

    async def set(self, key: str, value: str) -> None:
        await self._exec(_SET, (self.prefix + key, value))

    async def insert_if_absent(self, key: str, value: str) -> bool:
        return await self._exec_changed(_INSERT, (self.prefix + key, value)) == 1

    async def delete(self, key: str) -> None:
        await self._exec(_DELETE, (self.prefix + key,))

    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) pairs in key order, keys without this store's namespace."""
        start = self.prefix + prefix
        rows = await self._exec(_RANGE, (start, start + _END))
        return [(str(k)[len(self.prefix) :], str(v)) for k, v in rows]


class _SqliteTransaction(_SqliteOps):
    def __init__(self, db: _SqliteDB, prefix: str) -> None:
        self.db = db
        self.prefix = prefix

    async def _exec(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        return await asyncio.to_thread(self.db.run, sql, params)  # tx_lock is held by the transaction

    async def _exec_changed(self, sql: str, params: tuple[object, ...]) -> int:
        return await asyncio.to_thread(self.db.changed, sql, params)


class SqliteKVStore(_SqliteOps):
    def __init__(self, db_path: str | Path, namespace: str | None = None, *, _db: _SqliteDB | None = None):
        self.path = Path(db_path).expanduser()
        self.prefix = f"{namespace}:" if namespace else ""
        self._owner = _db is None
        self.db = _db or _SqliteDB(self.path)

    async def _exec(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        async with self.db.tx_lock:
            return await asyncio.to_thread(self.db.run, sql, params)

    async def _exec_changed(self, sql: str, params: tuple[object, ...]) -> int:
        async with self.db.tx_lock:
            return await asyncio.to_thread(self.db.changed, sql, params)

    async def values_with_prefix(self, prefix: str) -> list[str]:
        return [value for _, value in await self.items_with_prefix(prefix)]

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        rows = [(self.prefix + key, value) for key, value in items]
        async with self.db.tx_lock:
            await asyncio.to_thread(self.db.run_many, _SET, rows)

    async def items_after(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        start = self.prefix + prefix
        rows = await self._exec(_PAGE, (start, start + _END, self.prefix + (after or ""), limit))
        return [(str(k)[len(self.prefix) :], str(v)) for k, v in rows]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[KVTransaction]:
        async with self.db.tx_lock:
            # IMMEDIATE takes the write lock now: other processes on the file wait, never interleave.
            await asyncio.to_thread(self.db.run, "BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(self.db, self.prefix)
            except BaseException:
                # On the loop's thread, so that it happens before the lock is released even when the
                # task is being cancelled (a rollback writes nothing: it is quick).
                self.db.run("ROLLBACK")
                raise
            commit = asyncio.ensure_future(asyncio.to_thread(self.db.run, "COMMIT"))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                await asyncio.wait([commit])  # the lock is released only once the commit is done
                raise

    def namespaced(self, namespace: str) -> SqliteKVStore:
        return SqliteKVStore(self.path, f"{self.prefix}{namespace}", _db=self.db)

    async def data_version(self) -> int | None:
        """sqlite's count of commits made by other connections to the file (``PRAGMA data_version``;
        this connection's own do not count), None once closed. It reads the WAL index, not the disk:
        microseconds, so it runs on the caller's thread when the connection is free (a check per
        request then costs no thread hand-off), and on a worker once a statement there is done.
        Inside a transaction of ours it is still right: no other connection commits meanwhile."""
        db = self.db
        if db.lock.acquire(blocking=False):
            try:
                return self._probe()
            finally:
                db.lock.release()
        return await asyncio.to_thread(self._locked_probe)

    def _locked_probe(self) -> int | None:
        with self.db.lock:
            return self._probe()

    def _probe(self) -> int | None:
        db = self.db
        return None if db.closed else int(db.conn.execute("PRAGMA data_version").fetchone()[0])

    async def close(self) -> None:
        if self._owner:
            await asyncio.to_thread(self.db.close)


def shared_by_replicas(store: KVStore) -> bool:
    """Whether other replicas may use this store's database at the same time (PostgreSQL): then
    start-up recovery must not take their work under way for a crash's leftovers."""
    return not isinstance(store, SqliteKVStore)


def open_kvstore(config: KVStoreConfig) -> KVStore:
    if config.type == "sqlite":
        if not config.db_path:
            raise ConfigError("metadata_store.db_path is required for a sqlite store.")
        return SqliteKVStore(config.db_path, config.namespace)
    raise ConfigError(f"Unknown metadata_store type '{config.type}'. Supported: sqlite.")
