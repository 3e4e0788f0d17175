"""The VectorDBs API (which vector dbs exist, and who stores each) and VectorIO (insert and query chunks).

Embeddings are computed here with the db's embedding model, so every vector_io provider only
stores and searches: vectors (cosine) and texts (BM25, in its own full-text engine). Hybrid search is
the fusion of both rankings, done here for every provider (stack/ranking.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import ranking
from ..apis.common import content_has_image, content_to_text
from ..apis.inference.core import Inference
from ..apis.models import Models, ModelType
from ..apis.vector_io import (
    Chunk,
    ListVectorDBsResponse,
    QueryChunksResponse,
    RegisterVectorDbRequest,
    RRFRanker,
    StoredChunk,
    VectorDB,
    VectorIOProvider,
    WeightedRanker,
)
from ..errors import (
    BadRequestError,
    ProviderNotFoundError,
    UnsupportedError,
    VectorDBNotFoundError,
)
from ..storage.kvstore import KVStore
from .table import ResourceTable

DEFAULT_MAX_CHUNKS = 3
MAX_QUERY_CHUNKS = 1000


async def _register(provider: VectorIOProvider, db: VectorDB) -> VectorDB:
    return await provider.register_vector_db(db)


async def _unregister(provider: VectorIOProvider, db: VectorDB) -> None:
    await provider.unregister_vector_db(db)


def chunk_id(chunk: Chunk, text: str | None = None) -> str:
    """Stable per (document, content): re-inserting the same chunk replaces it instead of adding a copy.
    `text` is the chunk's text when the caller has it already."""
    if isinstance(chunk.metadata.get("chunk_id"), str):
        return str(chunk.metadata["chunk_id"])
    if text is None:
        text = content_to_text(chunk.content)
    key = json.dumps([chunk.metadata.get("document_id"), text], ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class VectorDBsTable:
    def __init__(
        self, store: KVStore, providers: dict[str, VectorIOProvider], inference: Inference, models: Models
    ) -> None:
        self.providers = providers
        self.inference = inference
        self.models = models
        self.table: ResourceTable[VectorDB, VectorIOProvider] = ResourceTable(
            kind="vector_db",
            resource_class=VectorDB,
            store=store,
            owners=providers,
            register_hook=_register,
            unregister_hook=_unregister,
            not_found=VectorDBNotFoundError,
        )

    async def build(self, request: RegisterVectorDbRequest) -> VectorDB:
        model = await self.models.get_model(request.embedding_model)
        if model.model_type != ModelType.embedding:
            raise BadRequestError(
                f"embedding_model '{request.embedding_model}' is an llm; give an embedding model "
                "(GET /v1/models lists them with model_type: embedding)."
            )
        dimension = int(model.metadata.get("embedding_dimension") or 0)
        if request.embedding_dimension is not None and request.embedding_dimension != dimension:
            raise BadRequestError(
                f"embedding_dimension {request.embedding_dimension} does not match model "
                f"'{request.embedding_model}', which produces {dimension}-dimensional embeddings."
            )
        provider_id = request.provider_id
        if provider_id is None:
            provider_id = next(iter(self.providers))  # the first vector_io provider of the run config
        elif provider_id not in self.providers:
            raise ProviderNotFoundError(provider_id, list(self.providers))
        return VectorDB(
            identifier=request.vector_db_id,
            provider_id=provider_id,
            provider_resource_id=request.provider_vector_db_id or request.vector_db_id,
            embedding_model=request.embedding_model,
            embedding_dimension=dimension,
        )

    async def list_vector_dbs(self) -> ListVectorDBsResponse:
        return ListVectorDBsResponse(data=self.table.list())

    async def get_vector_db(self, vector_db_id: str) -> VectorDB:
        return self.table.get(vector_db_id)

    async def register_vector_db(self, request: RegisterVectorDbRequest) -> VectorDB:
        db = await self.build(request)
        existing = self.table.find(db.identifier)
        if existing is not None and existing.model_dump() == db.model_dump():
            return existing  # registering the same thing again keeps its data
        return await self.table.register(db)

    async def unregister_vector_db(self, vector_db_id: str) -> None:
        await self.table.unregister(vector_db_id)


class VectorIORouter:
    def __init__(self, dbs: VectorDBsTable) -> None:
        self.dbs = dbs
        # Documents being written right now, per db: their chunks are left out of queries until the
        # write completes. A crash loses this, which is fine: start-up removes half-written documents.
        self._writing: dict[str, Counter[str]] = {}

    @contextmanager
    def hidden_while_written(self, vector_db_id: str, document_id: str) -> Iterator[None]:
        writing = self._writing.setdefault(vector_db_id, Counter())
        writing[document_id] += 1
        try:
            yield
        finally:
            writing[document_id] -= 1
            if writing[document_id] <= 0:
                del writing[document_id]

    def _visible(self, vector_db_id: str, chunk: Chunk) -> bool:
        writing = self._writing.get(vector_db_id)
        return not writing or str(chunk.metadata.get("document_id")) not in writing

    async def embed(self, db: VectorDB, texts: list[str]) -> list[list[float]]:
        result = await self.dbs.inference.embed(db.embedding_model, texts)
        return result.embeddings

    async def insert_chunks(self, vector_db_id: str, chunks: list[Chunk]) -> int:
        db = self.dbs.table.get(vector_db_id)
        for i, chunk in enumerate(chunks):
            if content_has_image(chunk.content):
                raise UnsupportedError(
                    f"chunks[{i}]: image content cannot be embedded by '{db.embedding_model}'."
                )
            if chunk.embedding is not None and len(chunk.embedding) != db.embedding_dimension:
                raise BadRequestError(
                    f"chunks[{i}].embedding has {len(chunk.embedding)} dimensions; "
                    f"vector db '{vector_db_id}' stores {db.embedding_dimension}."
                )
        # One id per chunk in a store. Explicit ids given twice are a mistake to report; chunks
        # identical in document and text (repeated boilerplate) are the same chunk, stored once.
        seen: dict[str, int] = {}
        unique: list[tuple[str, str, Chunk]] = []  # (id, text, chunk), each computed once
        for i, chunk in enumerate(chunks):
            text = content_to_text(chunk.content)
            ident = chunk_id(chunk, text)
            if ident in seen:
                if isinstance(chunk.metadata.get("chunk_id"), str):
                    raise BadRequestError(
                        f"chunks[{seen[ident]}] and chunks[{i}] have the same metadata.chunk_id "
                        f"'{ident}'; give each chunk of one insert its own id."
                    )
                continue
            seen[ident] = i
            unique.append((ident, text, chunk))
        missing = [i for i, (_, _, c) in enumerate(unique) if c.embedding is None]
        computed = await self.embed(db, [unique[i][1] for i in missing]) if missing else []
        embeddings = dict(zip(missing, computed, strict=True))
        items = []
        for i, (ident, text, chunk) in enumerate(unique):
            document_id = chunk.metadata.get("document_id")
            if chunk.embedding is not None:
                embedding, chunk = chunk.embedding, chunk.model_copy(update={"embedding": None})
            else:
                embedding = embeddings[i]
            items.append(
                StoredChunk(
                    id=ident,
                    chunk=chunk,
                    embedding=embedding,
                    document_id=str(document_id) if document_id is not None else None,
                    text=text,
                )
            )
        await self.dbs.table.owner(db).upsert(db, items)
        return len(items)

    async def delete_documents(self, vector_db_id: str, document_ids: Sequence[str]) -> None:
        db = self.dbs.table.get(vector_db_id)
        if document_ids:
            await self.dbs.table.owner(db).delete_documents(db, document_ids)

    async def query_chunks(
        self, vector_db_id: str, query: Any, params: dict[str, Any] | None
    ) -> QueryChunksResponse:
        """Params: max_chunks (default 3), score_threshold (none unless given: keeps chunks scoring at
        least that, on the mode's scale), mode (vector, keyword, hybrid), ranker (for hybrid)."""
        db = self.dbs.table.get(vector_db_id)
        params = params or {}
        k = params.get("max_chunks", DEFAULT_MAX_CHUNKS)
        threshold = params.get("score_threshold")
        mode = ranking.search_mode(params.get("mode"))
        fusion = ranking.ranker(params.get("ranker"))
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_QUERY_CHUNKS:
            raise BadRequestError(f"params.max_chunks must be an integer from 1 to 1000, got {k!r}.")
        if threshold is not None and (not isinstance(threshold, int | float) or isinstance(threshold, bool)):
            raise BadRequestError(f"params.score_threshold must be a number, got {threshold!r}.")
        if content_has_image(query):
            raise UnsupportedError("query: image queries are not supported; send text.")
        text = content_to_text(query)
        if not text.strip():
            raise BadRequestError("query: give some text to search for.")
        provider = self.dbs.table.owner(db)
        embedding: list[float] = []  # keyword search needs none
        if mode != "keyword":
            [embedding] = await self.embed(db, [text])

        async def search(fetch: int) -> list[tuple[Chunk, float]]:
            if mode == "keyword":
                return await provider.keyword_query(db, text, fetch)
            if mode == "vector":
                return await provider.query(db, embedding, fetch)
            near, matching = await asyncio.gather(
                provider.query(db, embedding, fetch), provider.keyword_query(db, text, fetch)
            )
            return _fused(near, matching, fusion)

        fetch = k
        while True:
            found = await search(fetch)
            visible = [(c, s) for c, s in found if self._visible(vector_db_id, c)]
            hits = [(c, s) for c, s in visible if threshold is None or s >= threshold]
            # Look further only when chunks still being written took places and the db has more
            # (past the threshold, further hits only score lower).
            exhausted = len(found) < fetch or fetch >= MAX_QUERY_CHUNKS or len(hits) < len(visible)
            if len(hits) >= k or len(visible) == len(found) or exhausted:
                break
            fetch = min(fetch * 4, MAX_QUERY_CHUNKS)
        hits = hits[:k]
        return QueryChunksResponse(chunks=[c for c, _ in hits], scores=[s for _, s in hits])


def _fused(
    near: list[tuple[Chunk, float]], matching: list[tuple[Chunk, float]], how: RRFRanker | WeightedRanker
) -> list[tuple[Chunk, float]]:
    chunks = {chunk_id(c): c for c, _ in [*near, *matching]}
    ranked = ranking.fuse([(chunk_id(c), s) for c, s in near], [(chunk_id(c), s) for c, s in matching], how)
    return [(chunks[ident], score) for ident, score in ranked]
