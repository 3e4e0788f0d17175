"""Chunks and their vectors in one sqlite file: a chunks table and a vec0 index per vector db."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from llamastack.stack.apis.vector_io import Chunk, VectorDB
from llamastack.stack.errors import ConfigError

from ..base import StoredChunk, storage_name
from .config import SqliteVecConfig


def _connect(path: Path) -> Any:
    """A connection with sqlite-vec loaded; Python builds without extension loading use pysqlite3."""
    import sqlite3

    import sqlite_vec

    conn = sqlite3.connect(path, check_same_thread=False)
    if not hasattr(conn, "enable_load_extension"):
        conn.close()
        try:
            import pysqlite3 as sqlite3_ext  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError(
                "This Python's sqlite3 cannot load extensions; "
                "install pysqlite3-binary for inline::sqlite-vec."
            ) from None
        conn = sqlite3_ext.connect(str(path), check_same_thread=False)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


class SqliteVecVectorIO:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._tables: dict[str, str] = {}

    @classmethod
    async def open(cls, config: SqliteVecConfig) -> SqliteVecVectorIO:
        path = Path(config.db_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(await asyncio.to_thread(_connect, path))

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def shutdown(self) -> None:
        with self._lock:
            self.conn.close()

    def _run(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            try:
                result = fn(*args)
                self.conn.commit()
                return result
            except BaseException:
                self.conn.rollback()
                raise

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(self._run, fn, *args)

    def _name(self, db: VectorDB) -> str:
        return self._tables[db.identifier]

    async def register_vector_db(self, db: VectorDB) -> VectorDB:
        name = storage_name(db.provider_resource_id or db.identifier)

        def create() -> None:
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name}_chunks (rowid INTEGER PRIMARY KEY,"
                " chunk_id TEXT UNIQUE NOT NULL, document_id TEXT, chunk TEXT NOT NULL)"
            )
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {name}_doc ON {name}_chunks(document_id)")
            self.conn.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {name}_vec USING "
                f"vec0(embedding float[{int(db.embedding_dimension)}] distance_metric=cosine)"
            )

        await self._in_thread(create)
        self._tables[db.identifier] = name
        return db

    async def unregister_vector_db(self, db: VectorDB) -> None:
        name = self._tables.pop(db.identifier, None) or storage_name(db.provider_resource_id or db.identifier)

        def drop() -> None:
            self.conn.execute(f"DROP TABLE IF EXISTS {name}_vec")
            self.conn.execute(f"DROP TABLE IF EXISTS {name}_chunks")

        await self._in_thread(drop)

    async def upsert(self, db: VectorDB, items: list[StoredChunk]) -> None:
        import sqlite_vec

        name = self._name(db)

        def write() -> None:
            for item in items:
                row = self.conn.execute(
                    f"SELECT rowid FROM {name}_chunks WHERE chunk_id = ?", (item.id,)
                ).fetchone()
                if row is None:
                    rowid = self.conn.execute(
                        f"INSERT INTO {name}_chunks (chunk_id, document_id, chunk) VALUES (?, ?, ?)",
                        (item.id, item.document_id, item.chunk.model_dump_json()),
                    ).lastrowid
                else:
                    rowid = row[0]
                    self.conn.execute(
                        f"UPDATE {name}_chunks SET document_id = ?, chunk = ? WHERE rowid = ?",
                        (item.document_id, item.chunk.model_dump_json(), rowid),
                    )
                    self.conn.execute(f"DELETE FROM {name}_vec WHERE rowid = ?", (rowid,))
                self.conn.execute(
                    f"INSERT INTO {name}_vec (rowid, embedding) VALUES (?, ?)",
                    (rowid, sqlite_vec.serialize_float32(item.embedding)),
                )

        await self._in_thread(write)

    async def delete_document(self, db: VectorDB, document_id: str) -> None:
        name = self._name(db)

        def delete() -> None:
            self.conn.execute(
                f"DELETE FROM {name}_vec WHERE rowid IN "
                f"(SELECT rowid FROM {name}_chunks WHERE document_id = ?)",
                (document_id,),
            )
            self.conn.execute(f"DELETE FROM {name}_chunks WHERE document_id = ?", (document_id,))

        await self._in_thread(delete)

    async def query(self, db: VectorDB, embedding: list[float], k: int) -> list[tuple[Chunk, float]]:
        import sqlite_vec

        name = self._name(db)

        def search() -> list[tuple[str, float]]:
            return self.conn.execute(
                f"SELECT c.chunk, v.distance FROM {name}_vec v JOIN {name}_chunks c ON c.rowid = v.rowid "
                "WHERE v.embedding MATCH ? AND k = ? ORDER BY v.distance",
                (sqlite_vec.serialize_float32(embedding), k),
            ).fetchall()

        rows = await self._in_thread(search)
        return [(Chunk.model_validate(json.loads(chunk)), 1.0 - float(distance)) for chunk, distance in rows]
