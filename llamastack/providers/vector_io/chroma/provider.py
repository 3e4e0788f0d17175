"""Chunks in chroma collections, one collection per vector db (cosine space); keyword search with
a BM25 index per collection (see keyword.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llamastack.stack.apis.common import content_to_text
from llamastack.stack.apis.vector_io import Chunk, StoredChunk, VectorDB
from llamastack.stack.boundary import Boundary, Failure, http_status_text
from llamastack.stack.errors import ConfigError, NotFoundError
from llamastack.stack.library_imports import library_imports

from ..base import storage_name
from .config import ChromaInlineConfig, ChromaRemoteConfig
from .keyword import KeywordIndex

log = logging.getLogger(__name__)

# One record per collection: the revision of its contents, changed by every write, so that keyword
# indexes (here and in other replicas on the same chroma server) know when to rebuild.
REVISIONS = "llamastack_revisions"
PAGE = 1000  # records per read, document ids per delete
# Each chunk's JSON is kept in its record's metadata under this key, not as chroma's `document`:
# chroma indexes every document for its full-text search (which keyword search here does not use),
# and that indexing cost as much as the rest of a write (an insert of 341 chunks: 250 ms with the
# JSON as documents, 112 ms in metadata). Records written before keep it as their document.
CHUNK_KEY = "chunk"


def _chunk_json(metadata: Any, document: str | None) -> str:
    stored = metadata.get(CHUNK_KEY) if metadata else None
    if isinstance(stored, str):
        return stored
    if document is None:
        raise ValueError("a chroma record without a stored chunk (not written by llamastack)")
    return document


def _chroma_failure(exc: BaseException) -> Failure:
    """chromadb's own errors carry the HTTP status they stand for (NotFoundError 404, InvalidArgumentError
    400, ...): worded like any service's answer."""
    code = exc.code()  # type: ignore[attr-defined]
    return Failure("status", http_status_text(code), status=code, body=str(exc))


class ChromaVectorIO:
    def __init__(self, config: ChromaInlineConfig | ChromaRemoteConfig) -> None:
        self.config = config
        self.client: Any = None
        self._collections: dict[str, Any] = {}
        self._revisions: Any = None
        self._opening: asyncio.Task[None] | None = None
        self._keyword: dict[str, KeywordIndex] = {}
        self._keyword_locks: dict[str, asyncio.Lock] = {}
        where = config.url if isinstance(config, ChromaRemoteConfig) else config.db_path
        self._boundary = Boundary(
            "chroma",
            where,
            rules={"chromadb.errors.ChromaError": _chroma_failure},
            passthrough=(ValueError, TypeError),  # chroma's own argument checks, which callers handle
        )

    async def initialize(self) -> None:
        # Importing chromadb and opening its files takes about half a second of CPU, which the start
        # need not wait for: the inline store opens at its first use or when the server, once up,
        # warms its providers. A chroma server is reached at once, so that a wrong URL stops the start.
        if isinstance(self.config, ChromaRemoteConfig):
            await self._opened()

    async def warm_up(self) -> None:
        """Opens the store in the background (called once the server answers)."""
        await self._opened()

    async def _open(self) -> None:
        self.client = await asyncio.to_thread(self._connect)
        self._revisions = await self._call(
            self.client.get_or_create_collection, name=REVISIONS, embedding_function=None
        )

    def _log_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("chroma could not be opened in %s: %s", getattr(self.config, "db_path", ""), exc)

    async def _opened(self) -> None:
        failed = self._opening is not None and self._opening.done() and self._opening.exception() is not None
        if self._opening is None or failed:  # a failed opening is tried again at the next use
            self._opening = asyncio.create_task(self._open())
            self._opening.add_done_callback(self._log_failure)
        await asyncio.shield(self._opening)  # a caller that goes away does not stop the opening

    def _connect(self) -> Any:
        with library_imports:
            import chromadb
            from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        if isinstance(self.config, ChromaInlineConfig):
            path = Path(self.config.db_path).expanduser()
            path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path), settings=settings)
        url = urlparse(self.config.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"remote::chromadb url must be http(s)://host:port, got '{self.config.url}'.")
        # chroma's own defaults apply to what the config leaves out.
        extra: dict[str, Any] = {
            k: v for k, v in (("tenant", self.config.tenant), ("database", self.config.database)) if v
        }
        try:
            return chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=settings,
                **extra,
            )
        except Exception as exc:
            raise ConfigError(f"Cannot reach the chroma server at {self.config.url}: {exc}") from None

    async def health(self) -> dict[str, str]:
        try:
            await self._opened()
            await asyncio.to_thread(self.client.heartbeat)
            return {"status": "OK"}
        except Exception as exc:
            return {"status": "Error", "message": str(exc)}

    async def shutdown(self) -> None:
        if self._opening is not None and not self._opening.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._opening  # its thread cannot be stopped halfway: let it finish
        self._collections.clear()
        self._keyword.clear()

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._boundary:  # network or server failures of a remote chroma, chroma's own errors
            return await asyncio.to_thread(fn, *args, **kwargs)

    def _collection(self, db: VectorDB) -> Any:
        return self._collections[db.identifier]

    async def register_vector_db(self, db: VectorDB) -> VectorDB:
        await self._opened()
        name = db.provider_resource_id or db.identifier
        collection = await self._call(
            self.client.get_or_create_collection,
            name=storage_name(name),
            metadata={"hnsw:space": "cosine", "vector_db_id": db.identifier},
            embedding_function=None,
        )
        self._collections[db.identifier] = collection
        return db

    async def unregister_vector_db(self, db: VectorDB) -> None:
        await self._opened()
        self._collections.pop(db.identifier, None)
        self._keyword.pop(db.identifier, None)
        name = storage_name(db.provider_resource_id or db.identifier)
        with contextlib.suppress(ValueError, NotFoundError):  # already gone
            await self._call(self.client.delete_collection, name=name)
        await self._call(self._revisions.delete, ids=[name])

    async def _changed(self, db: VectorDB) -> None:
        """After a write: a new revision, so every keyword index of this collection rebuilds."""
        self._keyword.pop(db.identifier, None)
        await self._call(
            self._revisions.upsert,
            ids=[self._collection(db).name],
            embeddings=[[1.0]],
            metadatas=[{"revision": uuid.uuid4().hex}],
        )

    async def _revision(self, db: VectorDB) -> str | None:
        found = await self._call(self._revisions.get, ids=[self._collection(db).name], include=["metadatas"])
        metadatas = found.get("metadatas") or []
        return str(metadatas[0].get("revision")) if metadatas and metadatas[0] else None

    async def upsert(self, db: VectorDB, items: list[StoredChunk]) -> None:
        if not items:
            return
        import numpy as np

        collection = self._collection(db)

        def write() -> None:
            # One float32 array, not lists: chroma checks a list's every number in Python, which
            # costs a third of the write.
            collection.upsert(
                ids=[i.id for i in items],
                embeddings=np.asarray([i.embedding for i in items], dtype=np.float32),
                metadatas=[
                    {"document_id": i.document_id or "", CHUNK_KEY: i.chunk.model_dump_json()} for i in items
                ],
            )

        await self._call(write)
        await self._changed(db)

    async def delete_documents(self, db: VectorDB, document_ids: Sequence[str]) -> None:
        collection = self._collection(db)
        ids = list(dict.fromkeys(document_ids))
        pages = [ids[i : i + PAGE] for i in range(0, len(ids), PAGE)]

        deleted: list[bool] = []

        def delete() -> None:
            for page in pages:
                where = {"document_id": {"$in": page}}
                # A read first: most documents of an ingest are new, and a revision (a write) is only
                # due when something goes.
                if collection.get(where=where, include=[], limit=1)["ids"]:
                    deleted.append(True)
                    collection.delete(where=where)

        try:
            await self._call(delete)
        finally:
            if deleted:  # also when a later page failed: what went must not stay in keyword indexes
                await self._changed(db)

    async def query(self, db: VectorDB, embedding: list[float], k: int) -> list[tuple[Chunk, float]]:
        import numpy as np

        result = await self._call(
            self._collection(db).query,
            query_embeddings=np.asarray([embedding], dtype=np.float32),
            n_results=k,
            include=["metadatas", "documents", "distances"],
        )
        found = zip(result["metadatas"][0], result["documents"][0], result["distances"][0], strict=True)
        return [(Chunk.model_validate_json(_chunk_json(m, d)), 1.0 - float(dist)) for m, d, dist in found]

    async def keyword_query(self, db: VectorDB, text: str, k: int) -> list[tuple[Chunk, float]]:
        index = await self._keyword_index(db)
        return await asyncio.to_thread(index.search, text, k)

    async def _keyword_index(self, db: VectorDB) -> KeywordIndex:
        lock = self._keyword_locks.setdefault(db.identifier, asyncio.Lock())
        async with lock:  # one rebuild at a time per collection
            revision = await self._revision(db)
            index = self._keyword.get(db.identifier)
            if index is None or index.revision != revision:
                chunks = await self._all_chunks(db)
                texts = [content_to_text(c.content) for c in chunks]
                index = await asyncio.to_thread(KeywordIndex.build, revision, chunks, texts)
                self._keyword[db.identifier] = index
            return index

    async def _all_chunks(self, db: VectorDB) -> list[Chunk]:
        collection = self._collection(db)
        stored: dict[str, str] = {}  # by id: a write between two pages cannot duplicate a chunk
        offset = 0
        while True:
            page = await self._call(
                collection.get, include=["metadatas", "documents"], limit=PAGE, offset=offset
            )
            found = zip(page["ids"], page["metadatas"], page["documents"], strict=True)
            stored.update((i, _chunk_json(m, d)) for i, m, d in found)
            offset += len(page["ids"])
            if len(page["ids"]) < PAGE:
                break
        return [Chunk.model_validate_json(j) for j in stored.values()]
