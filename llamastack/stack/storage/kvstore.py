"""A small async key-value store for state that must survive a restart.

sqlite is the default (one file under the state dir). Calls run in a worker thread so the
event loop never waits on disk; writes are serialised by sqlite itself.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from ..config import KVStoreConfig
from ..errors import ConfigError


class KVStore(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def values_with_prefix(self, prefix: str) -> list[str]: ...
    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]: ...
    async def close(self) -> None: ...


class SqliteKVStore:
    def __init__(self, db_path: str | Path, namespace: str | None = None) -> None:
        self.path = Path(db_path).expanduser()
        self.prefix = f"{namespace}:" if namespace else ""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # Every commit reaches the disk before the call returns: an acknowledged write survives a
        # crash of the process (and of the machine), whatever the build's default is.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS kvstore (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _run(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    async def get(self, key: str) -> str | None:
        rows = await asyncio.to_thread(
            self._run, "SELECT value FROM kvstore WHERE key = ?", (self.prefix + key,)
        )
        return str(rows[0][0]) if rows else None

    async def set(self, key: str, value: str) -> None:
        await asyncio.to_thread(
            self._run,
            "INSERT INTO kvstore (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (self.prefix + key, value),
        )

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._run, "DELETE FROM kvstore WHERE key = ?", (self.prefix + key,))

    async def values_with_prefix(self, prefix: str) -> list[str]:
        start = self.prefix + prefix
        # Keys in [prefix, prefix + U+FFFF) share the prefix; the index answers the range.
        rows = await asyncio.to_thread(
            self._run,
            "SELECT value FROM kvstore WHERE key >= ? AND key < ? ORDER BY key",
            (start, start + "\uffff"),
        )
        return [str(r[0]) for r in rows]

    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(key, value) pairs in key order, keys without this store's namespace."""
        start = self.prefix + prefix
        rows = await asyncio.to_thread(
            self._run,
            "SELECT key, value FROM kvstore WHERE key >= ? AND key < ? ORDER BY key",
            (start, start + "\uffff"),
        )
        return [(str(k)[len(self.prefix) :], str(v)) for k, v in rows]

    async def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_kvstore(config: KVStoreConfig) -> KVStore:
    if config.type == "sqlite":
        if not config.db_path:
            raise ConfigError("metadata_store.db_path is required for a sqlite store.")
        return SqliteKVStore(config.db_path, config.namespace)
    raise ConfigError(f"Unknown metadata_store type '{config.type}'. Supported: sqlite.")
