"""Chunks and their vectors in one sqlite file: per vector db a chunks table, a vec0 index of the
embeddings and an FTS5 index of the texts (for keyword search), all written in one transaction."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llamastack.stack.apis.common import content_to_text
from llamastack.stack.apis.vector_io import Chunk, StoredChunk, VectorDB
from llamastack.stack.errors import ConfigError
from llamastack.stack.library_imports import library_imports

from ..base import storage_name
from .config import SqliteVecConfig

# Porter stemming on unicode61 words: "rivers" finds "river". The chroma provider stems the same way.
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"
MAX_QUERY_TERMS = 64


def fts_query(text: str) -> str | None:
    """An FTS5 expression matching any of the text's words, each quoted so that punctuation and FTS5
    operators in user text (AND, NEAR, *, ^, quotes) are plain words. None when there is no word.

    Any word rather than all of them (FTS5's default): a question rarely has every word of the passage
    that answers it; BM25 ranks the chunks sharing the rarest words first."""
    words = list(dict.fromkeys(w.lower() for w in re.findall(r"\w+", text)))[:MAX_QUERY_TERMS]
    return " OR ".join(f'"{w}"' for w in words) or None


def _connect(path: Path) -> Any:
    """A connection with sqlite-vec loaded; Python builds without extension loading use pysqlite3."""
    import sqlite3

    with library_imports:
        import sqlite_vec  # imports numpy.typing

    conn = sqlite3.connect(path, check_same_thread=False)
    if not hasattr(conn, "enable_load_extension"):
        conn.close()
        try:
            with library_imports:
                import pysqlite3 as sqlite3_ext  # type: ignore[import-untyped,unused-ignore]
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
            has_fts = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", (f"{name}_fts",)
            ).fetchone()
            if has_fts is None:
                self.conn.execute(
                    f"CREATE VIRTUAL TABLE {name}_fts USING fts5(content, tokenize='{FTS_TOKENIZER}')"
                )
                # A db written before keyword search existed: index the chunks it already has.
                for rowid, chunk in self.conn.execute(f"SELECT rowid, chunk FROM {name}_chunks").fetchall():
                    text = content_to_text(Chunk.model_validate_json(chunk).content)
                    self.conn.execute(f"INSERT INTO {name}_fts (rowid, content) VALUES (?, ?)", (rowid, text))

        await self._in_thread(create)
        self._tables[db.identifier] = name
        return db

    async def unregister_vector_db(self, db: VectorDB) -> None:
        name = self._tables.pop(db.identifier, None) or storage_name(db.provider_resource_id or db.identifier)

        def drop() -> None:
            self.conn.execute(f"DROP TABLE IF EXISTS {name}_vec")
            self.conn.execute(f"DROP TABLE IF EXISTS {name}_fts")
            self.conn.execute(f"DROP TABLE IF EXISTS {name}_chunks")

        await self._in_thread(drop)

    async def upsert(self, db: VectorDB, items: list[StoredChunk]) -> None:
        import sqlite_vec

        name = self._name(db)

        def write() -> None:
            indexed: dict[int, StoredChunk] = {}  # by rowid: an id given twice keeps its last item
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
                    self.conn.execute(f"DELETE FROM {name}_fts WHERE rowid = ?", (rowid,))
                indexed[rowid] = item
            # The indexes in one statement each, for the whole batch.
            self.conn.executemany(
                f"INSERT INTO {name}_vec (rowid, embedding) VALUES (?, ?)",
                [(r, sqlite_vec.serialize_float32(i.embedding)) for r, i in indexed.items()],
            )
            self.conn.executemany(
                f"INSERT INTO {name}_fts (rowid, content) VALUES (?, ?)",
                [(r, i.text) for r, i in indexed.items()],
            )

        await self._in_thread(write)

    async def delete_documents(self, db: VectorDB, document_ids: Sequence[str]) -> None:
        name = self._name(db)
        params = [(d,) for d in dict.fromkeys(document_ids)]

        def delete() -> None:  # one transaction for all of them
            for index in ("vec", "fts"):
                self.conn.executemany(
                    f"DELETE FROM {name}_{index} WHERE rowid IN "
                    f"(SELECT rowid FROM {name}_chunks WHERE document_id = ?)",
                    params,
                )
            self.conn.executemany(f"DELETE FROM {name}_chunks WHERE document_id = ?", params)

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

    async def keyword_query(self, db: VectorDB, text: str, k: int) -> list[tuple[Chunk, float]]:
        name = self._name(db)
        expression = fts_query(text)
        if expression is None:
            return []

        def search() -> list[tuple[str, float]]:
            # FTS5's bm25() is negative, more negative for better matches: negate it.
            return self.conn.execute(
                f"SELECT c.chunk, -bm25({name}_fts) AS score FROM {name}_fts f "
                f"JOIN {name}_chunks c ON c.rowid = f.rowid WHERE {name}_fts MATCH ? "
                "ORDER BY score DESC LIMIT ?",
                (expression, k),
            ).fetchall()

        rows = await self._in_thread(search)
        return [(Chunk.model_validate(json.loads(chunk)), float(score)) for chunk, score in rows]
