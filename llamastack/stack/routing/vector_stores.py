"""OpenAI-compatible vector stores, built on vector dbs: a vector store is a vector db plus records
(name, metadata, files with their attributes) kept in the kv store. Files come from the Files API,
are parsed, chunked with the requested strategy, embedded and stored like any other chunks.

Attaching is crash-consistent: the file's record is written `in_progress` before any chunk, with
the id of the replica indexing it; its chunks stay out of searches until the record says
`completed`. A file left `in_progress` by a crash (or by a replica whose lease lapsed, see
storage/replicas.py) becomes a `failed` one (chunks removed, `last_error` says why): at start-up in
`recover()`, and when a request reads it.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from .. import access, ingestion, ranking
from ..apis.files import Files
from ..apis.models import Models, ModelType
from ..apis.vector_io import Chunk, QueryChunksResponse, RegisterVectorDbRequest, VectorIO
from ..apis.vector_stores import (
    OpenaiAttachFileToVectorStoreRequest,
    OpenaiCreateVectorStoreRequest,
    OpenaiSearchVectorStoreRequest,
    OpenaiUpdateVectorStoreRequest,
    RankingOptions,
    VectorStoreChunkingStrategy,
    VectorStoreChunkingStrategyAuto,
    VectorStoreChunkingStrategyStatic,
    VectorStoreContent,
    VectorStoreDeleteResponse,
    VectorStoreFileContentsResponse,
    VectorStoreFileCounts,
    VectorStoreFileDeleteResponse,
    VectorStoreFileLastError,
    VectorStoreFileObject,
    VectorStoreListFilesResponse,
    VectorStoreListResponse,
    VectorStoreObject,
    VectorStoreSearchResponse,
    VectorStoreSearchResponsePage,
)
from ..errors import BadRequestError, VectorStoreFileNotFoundError, VectorStoreNotFoundError
from ..pagination import paginate
from ..storage.kvstore import KVStore
from ..storage.records import RecordStore
from ..storage.replicas import ReplicaLeases
from .vector_io import MAX_QUERY_CHUNKS, VectorDBsTable

log = logging.getLogger(__name__)

# OpenAI's ranker names: here they all mean the default fusion of hybrid search (RRF).
OPENAI_RANKERS = (None, "none", "auto", "default-2024-11-15")
# OpenAI's 'auto' chunking strategy.
AUTO_CHUNK_TOKENS, AUTO_OVERLAP_TOKENS = 800, 400
INSERT_BATCH = 256  # chunks embedded and stored at once
INTERRUPTED = "Indexing was interrupted by a server restart; its chunks were removed. Attach the file again."
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "in": lambda a, b: a in b,
    "nin": lambda a, b: a not in b,
}


class _FileRecord(BaseModel):
    """What we keep per attached file: the API object plus the filename search results show."""

    file: VectorStoreFileObject
    filename: str
    replica_id: str | None = None  # the replica indexing it (while in_progress)


def matches(attributes: dict[str, Any], condition: dict[str, Any], where: str = "filters") -> bool:
    """OpenAI attribute filters: comparisons (eq, ne, gt, gte, lt, lte, in, nin) and and/or compounds."""
    kind = condition.get("type")
    if kind in ("and", "or"):
        parts = condition.get("filters")
        if not isinstance(parts, list) or not parts:
            raise BadRequestError(f"{where}: '{kind}' needs a non-empty list under 'filters'.")
        results = (matches(attributes, p, f"{where}.filters[{i}]") for i, p in enumerate(parts))
        return all(results) if kind == "and" else any(results)
    if kind not in _COMPARISONS or not isinstance(condition.get("key"), str) or "value" not in condition:
        raise BadRequestError(
            f"{where}: expected {{'type': eq|ne|gt|gte|lt|lte|in|nin, 'key': ..., 'value': ...}} "
            "or {'type': and|or, 'filters': [...]}."
        )
    key = condition["key"]
    if key not in attributes:
        return kind in ("ne", "nin")
    try:
        return bool(_COMPARISONS[kind](attributes[key], condition["value"]))
    except TypeError:
        return False  # e.g. comparing a string attribute with a number


def _failed(record: VectorStoreFileObject, message: str) -> VectorStoreFileObject:
    error = VectorStoreFileLastError(code="server_error", message=message)
    return record.model_copy(update={"status": "failed", "last_error": error})


def _check_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    attributes = attributes or {}
    if len(attributes) > 16:
        raise BadRequestError("attributes: at most 16 keys are allowed.")
    for key, value in attributes.items():
        if not isinstance(value, str | int | float | bool):
            raise BadRequestError(f"attributes.{key}: values must be strings, numbers or booleans.")
    return attributes


def _strategy(raw: dict[str, Any] | VectorStoreChunkingStrategy | None) -> VectorStoreChunkingStrategy:
    if raw is None:
        return VectorStoreChunkingStrategyAuto()
    if not isinstance(raw, dict):
        return raw
    if raw.get("type") == "static":
        strategy = VectorStoreChunkingStrategyStatic.model_validate(raw)
    elif raw.get("type") in (None, "auto"):
        return VectorStoreChunkingStrategyAuto()
    else:
        raise BadRequestError("chunking_strategy.type must be 'auto' or 'static'.")
    return strategy


def _chunk_sizes(strategy: VectorStoreChunkingStrategy) -> tuple[int, int]:
    if isinstance(strategy, VectorStoreChunkingStrategyStatic):
        size, overlap = strategy.static.max_chunk_size_tokens, strategy.static.chunk_overlap_tokens
        if overlap > size // 2:
            raise BadRequestError(
                "chunking_strategy: chunk_overlap_tokens may be at most half of max_chunk_size_tokens."
            )
        return size, overlap
    return AUTO_CHUNK_TOKENS, AUTO_OVERLAP_TOKENS


class OpenAIVectorStores:
    def __init__(
        self,
        store: KVStore,
        *,
        vector_io: VectorIO,
        vector_dbs: VectorDBsTable,
        models: Models,
        files: Callable[[], Files | None],
        replicas: ReplicaLeases | None = None,
    ) -> None:
        self.replicas = replicas or ReplicaLeases(store, shared=False)
        self.vector_io = vector_io
        self.vector_dbs = vector_dbs
        self.models = models
        self.store = store
        self._files_api_of = files  # looked up when a file is attached: built after this, or never
        self.owners = access.OwnerIndex(store, "vector_store")  # with API keys: each key sees its own
        self.records: RecordStore[VectorStoreObject] = RecordStore(
            store, VectorStoreObject, kind="vector_store"
        )
        # Keyed "<vector store id>:<file id>".
        self.file_records: RecordStore[_FileRecord] = RecordStore(
            store, _FileRecord, kind="vector_store_file", label="vector store file"
        )

    # --- records -------------------------------------------------------------------------------

    async def _get(self, vector_store_id: str) -> VectorStoreObject:
        await self.owners.check(vector_store_id, lambda: VectorStoreNotFoundError(vector_store_id))
        return await self.records.require(vector_store_id, lambda: VectorStoreNotFoundError(vector_store_id))

    async def _put(self, vs: VectorStoreObject | dict[str, Any]) -> VectorStoreObject:
        vs_id = vs.id if isinstance(vs, VectorStoreObject) else str(vs.get("id"))
        return await self.records.put(vs_id, vs)

    async def _files(self, vector_store_id: str) -> list[tuple[VectorStoreFileObject, str]]:
        return [(r.file, r.filename) for r in await self.file_records.list(f"{vector_store_id}:")]

    async def _file(self, vector_store_id: str, file_id: str) -> VectorStoreFileObject:
        await self._get(vector_store_id)
        missing = functools.partial(VectorStoreFileNotFoundError, vector_store_id, file_id)
        record = await self.file_records.require(f"{vector_store_id}:{file_id}", missing)
        return (await self._settled([record]))[0].file

    async def _put_file(
        self, record: VectorStoreFileObject, filename: str, *, replica_id: str | None = None
    ) -> VectorStoreFileObject:
        key = f"{record.vector_store_id}:{record.id}"
        stored = _FileRecord(file=record, filename=filename, replica_id=replica_id)
        return (await self.file_records.put(key, stored)).file

    async def _interrupt(self, record: _FileRecord) -> VectorStoreFileObject:
        """A file whose indexing stopped with its replica: its chunks go, its record says failed."""
        f = record.file
        if self.vector_dbs.table.find(f.vector_store_id) is not None:
            await self.vector_io.delete_documents(f.vector_store_id, [f.id])
        return await self._put_file(_failed(f, INTERRUPTED), record.filename)

    async def _settled(self, records: builtins.list[_FileRecord]) -> builtins.list[_FileRecord]:
        """The records, with files left in_progress by a replica that is gone marked failed (their
        chunks removed, the store's counts refreshed): one read of the leases, only if any is. Alone
        on its database, start-up recovery already failed what the last stop cut off."""
        if not self.replicas.shared or not any(r.file.status == "in_progress" for r in records):
            return records
        judge = await self.replicas.judge()
        settled, gone = [], set()
        for record in records:
            if record.file.status == "in_progress" and not judge(record.replica_id, record.file.created_at):
                record = record.model_copy(update={"file": await self._interrupt(record)})
                gone.add(record.file.vector_store_id)
            settled.append(record)
        for vector_store_id in gone:
            log.warning("Marked files of %s failed: the replica indexing them stopped.", vector_store_id)
            await self._refresh_counts(vector_store_id)
        return settled

    async def _refresh_counts(self, vector_store_id: str, *, touch: bool = True) -> VectorStoreObject:
        vs = await self._get(vector_store_id)  # the latest, so a concurrent update is not undone
        files = [f for f, _ in await self._files(vs.id)]
        counts = VectorStoreFileCounts(total=len(files))
        for f in files:
            setattr(counts, f.status, getattr(counts, f.status) + 1)
        usage = sum(f.usage_bytes for f in files)
        if not touch and (counts, usage) == (vs.file_counts, vs.usage_bytes):
            return vs
        changes: dict[str, Any] = {"file_counts": counts.model_dump(), "usage_bytes": usage}
        if touch:
            changes["last_active_at"] = int(time.time())
        return await self._put({**vs.model_dump(), **changes})

    def _files_api(self) -> Files:
        files = self._files_api_of()
        if files is None:
            raise BadRequestError("This server has no Files API provider; files cannot be attached.")
        return files

    # --- vector stores -------------------------------------------------------------------------

    async def create(self, request: OpenaiCreateVectorStoreRequest) -> VectorStoreObject:
        embedding_model = request.embedding_model or await self._default_embedding_model()
        strategy = _strategy(request.chunking_strategy)
        _chunk_sizes(strategy)
        for file_id in request.file_ids or []:
            await self._files_api().get_file(file_id)  # 404 before anything is created
        vs_id = f"vs_{uuid.uuid4().hex}"
        await self.vector_dbs.register_vector_db(
            RegisterVectorDbRequest(
                vector_db_id=vs_id,
                embedding_model=embedding_model,
                embedding_dimension=request.embedding_dimension,
                provider_id=request.provider_id,
                provider_vector_db_id=request.provider_vector_db_id,
            )
        )
        now = int(time.time())
        vs = VectorStoreObject(
            id=vs_id,
            created_at=now,
            name=request.name,
            expires_after=request.expires_after,
            metadata=request.metadata or {},
            last_active_at=now,
        )
        await self.owners.claim(vs_id)
        await self._put(vs)
        for file_id in request.file_ids or []:
            await self.attach_file(
                vs_id, OpenaiAttachFileToVectorStoreRequest(file_id=file_id, chunking_strategy=strategy)
            )
        return await self._get(vs_id)

    async def _default_embedding_model(self) -> str:
        models = [m for m in (await self.models.list_models()).data if m.model_type == ModelType.embedding]
        if not models:
            raise BadRequestError("No embedding model is registered; register one or pass embedding_model.")
        return models[0].identifier

    async def list(
        self, limit: int = 20, order: str = "desc", after: str | None = None, before: str | None = None
    ) -> VectorStoreListResponse:
        if not 1 <= limit <= 100:
            raise BadRequestError("limit must be between 1 and 100.")
        stores = await self.owners.visible(await self.records.list(), key=lambda s: s.id)
        stores.sort(key=lambda s: (s.created_at, s.id), reverse=order != "asc")
        page = paginate(stores, limit=limit, after=after, before=before)
        return VectorStoreListResponse(
            data=page.data, first_id=page.first_id, last_id=page.last_id, has_more=page.has_more
        )

    async def get(self, vector_store_id: str) -> VectorStoreObject:
        return await self._get(vector_store_id)

    async def update(
        self, vector_store_id: str, request: OpenaiUpdateVectorStoreRequest
    ) -> VectorStoreObject:
        vs = await self._get(vector_store_id)
        # An explicit null leaves the field as it is (OpenAI's schema accepts null for all three).
        changes = request.model_dump(exclude_unset=True, exclude_none=True)
        return await self._put({**vs.model_dump(), **changes, "last_active_at": int(time.time())})

    async def delete(self, vector_store_id: str) -> VectorStoreDeleteResponse:
        await self.owners.check(vector_store_id, lambda: VectorStoreNotFoundError(vector_store_id))
        # Works on records that no longer read, too: that is how such a store is removed.
        if not await self.records.exists(vector_store_id):
            raise VectorStoreNotFoundError(vector_store_id)
        await self.vector_dbs.table.unregister(vector_store_id, missing_ok=True)
        for key in await self.file_records.keys(f"{vector_store_id}:"):
            await self.file_records.delete(key)
        await self.records.delete(vector_store_id)
        await self.owners.release(vector_store_id)
        return VectorStoreDeleteResponse(id=vector_store_id)

    # --- files ---------------------------------------------------------------------------------

    async def attach_file(
        self, vector_store_id: str, request: OpenaiAttachFileToVectorStoreRequest
    ) -> VectorStoreFileObject:
        await self._get(vector_store_id)
        attributes = _check_attributes(request.attributes)
        strategy = _strategy(request.chunking_strategy)
        size, overlap = _chunk_sizes(strategy)
        files = self._files_api()
        meta = await files.get_file(request.file_id)
        data, content_type = await files.read_content(request.file_id)
        prepared = await ingestion.prepare_file(
            data,
            content_type,
            ingestion.Chunking(size, overlap),
            subject=f"File '{request.file_id}' ({meta.filename}) cannot be indexed",
            document_id=request.file_id,
            metadata={
                "document_id": request.file_id,
                "file_id": request.file_id,
                "filename": meta.filename,
                "attributes": attributes,
            },
        )
        record = VectorStoreFileObject(
            id=request.file_id,
            attributes=attributes,
            chunking_strategy=strategy,
            created_at=int(time.time()),
            status="in_progress",
            vector_store_id=vector_store_id,
        )
        # Hidden until the record says completed, not only while the chunks are written.
        with self.vector_io.hidden_while_written(vector_store_id, request.file_id):
            # The record first: a crash from here on leaves an in_progress file for recover().
            record = await self._put_file(record, meta.filename, replica_id=self.replicas.replica_id)
            await self._refresh_counts(vector_store_id)
            try:
                await ingestion.replace_document(
                    self.vector_io, vector_store_id, request.file_id, prepared.chunks, batch_size=INSERT_BATCH
                )
                done = record.model_copy(update={"status": "completed", "usage_bytes": prepared.text_bytes})
                record = await self._put_file(done, meta.filename)
            except BaseException as exc:
                await self._fail(record, meta.filename, exc)
                raise
        await self._refresh_counts(vector_store_id)
        return record

    async def _fail(self, record: VectorStoreFileObject, filename: str, exc: BaseException) -> None:
        """An attach that failed leaves no chunks, and its record says why."""
        reason = getattr(exc, "detail", None) or (
            "The request was cancelled." if isinstance(exc, asyncio.CancelledError) else type(exc).__name__
        )
        try:
            await self.vector_io.delete_documents(record.vector_store_id, [record.id])
            await self._put_file(_failed(record, f"Indexing failed: {reason}"), filename)
            await self._refresh_counts(record.vector_store_id)
        except Exception as cleanup:  # the start-up recovery finishes what this could not
            log.warning("Could not mark file %s of %s failed: %s", record.id, record.vector_store_id, cleanup)

    async def recover(self) -> None:
        """At start-up: files a crash left in_progress lose their chunks and become failed; every
        store's counts are recomputed (a crash may have come between a file's write and its count).
        On a database other replicas share, a file being indexed by a replica whose lease is alive is
        left as it is."""
        interrupted = 0
        judge = await self.replicas.judge()
        stores = set(await self.records.keys())
        for key, record in await self.file_records.items():
            f = record.file
            if f.vector_store_id not in stores:  # a crash came during the store's delete: finish it
                await self.file_records.delete(key)
                continue
            if f.status != "in_progress" or judge(record.replica_id, f.created_at):
                continue
            await self._interrupt(record)
            interrupted += 1
        for vs in await self.records.list():
            await self._refresh_counts(vs.id, touch=False)
        if interrupted:
            log.warning("Marked %d vector store file(s) failed: their indexing was interrupted.", interrupted)

    async def list_files(
        self,
        vector_store_id: str,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
        status: str | None = None,
    ) -> VectorStoreListFilesResponse:
        await self._get(vector_store_id)
        if not 1 <= limit <= 100:
            raise BadRequestError("limit must be between 1 and 100.")
        records = await self._settled(await self.file_records.list(f"{vector_store_id}:"))
        files = [r.file for r in records if status is None or r.file.status == status]
        files.sort(key=lambda f: (f.created_at, f.id), reverse=order != "asc")
        page = paginate(files, limit=limit, after=after, before=before)
        return VectorStoreListFilesResponse(
            data=page.data, first_id=page.first_id, last_id=page.last_id, has_more=page.has_more
        )

    async def get_file(self, vector_store_id: str, file_id: str) -> VectorStoreFileObject:
        return await self._file(vector_store_id, file_id)

    async def update_file(
        self, vector_store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> VectorStoreFileObject:
        record = await self._file(vector_store_id, file_id)
        record = record.model_copy(update={"attributes": _check_attributes(attributes)})
        # Attributes live on every chunk too (search filters on them): re-attach with the new ones.
        return await self.attach_file(
            vector_store_id,
            OpenaiAttachFileToVectorStoreRequest(
                file_id=file_id, attributes=record.attributes, chunking_strategy=record.chunking_strategy
            ),
        )

    async def delete_file(self, vector_store_id: str, file_id: str) -> VectorStoreFileDeleteResponse:
        await self._get(vector_store_id)
        key = f"{vector_store_id}:{file_id}"
        if not await self.file_records.exists(key):  # an unreadable record can still be deleted
            raise VectorStoreFileNotFoundError(vector_store_id, file_id)
        # Chunks first: a crash in between leaves a record whose delete can simply be repeated.
        await self.vector_io.delete_documents(vector_store_id, [file_id])
        await self.file_records.delete(key)
        await self._refresh_counts(vector_store_id)
        return VectorStoreFileDeleteResponse(id=file_id)

    async def file_content(self, vector_store_id: str, file_id: str) -> VectorStoreFileContentsResponse:
        record = await self._file(vector_store_id, file_id)
        files = self._files_api()
        meta = await files.get_file(file_id)
        data, content_type = await files.read_content(file_id)
        subject = f"File '{file_id}' ({meta.filename}) cannot be read as text"
        text = await ingestion.file_text(data, content_type, subject=subject)
        return VectorStoreFileContentsResponse(
            file_id=file_id,
            filename=meta.filename,
            attributes=record.attributes,
            content=[VectorStoreContent(text=text)],
        )

    # --- search --------------------------------------------------------------------------------

    async def search(
        self, vector_store_id: str, request: OpenaiSearchVectorStoreRequest
    ) -> VectorStoreSearchResponsePage:
        await self._get(vector_store_id)
        query = request.query if isinstance(request.query, str) else " ".join(request.query)
        limit = request.max_num_results or 10
        mode = ranking.search_mode(request.search_mode, "search_mode")
        options = request.ranking_options or RankingOptions()
        if options.ranker not in (*OPENAI_RANKERS, *ranking.RANKERS):
            names = ", ".join(f"'{n}'" for n in (*ranking.RANKERS, *OPENAI_RANKERS) if n)
            raise BadRequestError(
                f"ranking_options.ranker {options.ranker!r} is not known; use one of {names}."
            )
        fusion = ranking.ranker(None if options.ranker in OPENAI_RANKERS else options.ranker)
        # Vector scores can be below 0 (cosine): the spec's default threshold of 0 applies only when
        # the client sends it.
        threshold = options.score_threshold if "score_threshold" in options.model_fields_set else None
        if request.filters is not None:
            matches({}, request.filters)  # validate the filter shape once, up front
        status = {f.id: f.status for f, _ in await self._files(vector_store_id)}
        # Chunks of files that are not completed are skipped (still being indexed, or failed), and
        # filters apply after the vector search: search wider, and again wider while places go unused.
        skipping = any(v != "completed" for v in status.values())
        k = limit * 5 if request.filters or skipping else limit
        while True:
            found = await self.vector_io.query_chunks(
                vector_store_id,
                query,
                {"max_chunks": k, "score_threshold": threshold, "mode": mode, "ranker": fusion},
            )
            data = self._results(found, status, request.filters, limit)
            if len(data) >= limit or len(found.chunks) < k or k >= MAX_QUERY_CHUNKS:
                break
            k = min(k * 4, MAX_QUERY_CHUNKS)
        return VectorStoreSearchResponsePage(search_query=query, data=data)

    @staticmethod
    def _results(
        found: QueryChunksResponse, status: Mapping[str, str], filters: dict[str, Any] | None, limit: int
    ) -> builtins.list[VectorStoreSearchResponse]:
        data = []
        for chunk, score in zip(found.chunks, found.scores, strict=True):
            file_id = chunk.metadata.get("file_id")
            if file_id is not None and status.get(str(file_id)) != "completed":
                continue  # written by an attach that has not completed (or whose record is gone)
            attributes = _attributes(chunk)
            if filters is not None and not matches(attributes, filters):
                continue
            data.append(
                VectorStoreSearchResponse(
                    file_id=str(file_id if file_id is not None else chunk.metadata.get("document_id", "")),
                    filename=str(chunk.metadata.get("filename", "")),
                    score=score,
                    attributes=attributes,
                    content=[VectorStoreContent(text=_text(chunk))],
                )
            )
            if len(data) == limit:
                break
        return data


def _attributes(chunk: Chunk) -> dict[str, Any]:
    """What search shows and filters on: an attached file's attributes; for chunks inserted with
    vector-io, their metadata (its string, number and boolean values)."""
    attributes = chunk.metadata.get("attributes")
    if isinstance(attributes, dict):
        return attributes
    return {k: v for k, v in chunk.metadata.items() if isinstance(v, str | int | float | bool)}


def _text(chunk: Chunk) -> str:
    from ..apis.common import content_to_text

    return content_to_text(chunk.content)
