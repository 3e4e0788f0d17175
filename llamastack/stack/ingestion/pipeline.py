"""The whole path of a document into a vector db: text, token-aware chunks, then `VectorIO`.

Preparing (loading, parsing, chunking) comes first and writes nothing, so bad input is a 4xx that
leaves no trace. Storing replaces a document's chunks: its old chunks are deleted, the new ones
inserted in batches, and the document stays out of queries until it is fully written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from ..apis.vector_io import Chunk, RAGDocument, VectorIO
from ..errors import BadRequestError, DocumentError
from ..outbound import OutboundPolicy, OutboundRefusedError
from .chunk import TextChunk, chunk_text
from .extract import extract, extract_text
from .load import LoadedDocument, Source, decode_source, fetch_source, load_document

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """How documents given by URL are fetched, and how large any document may be."""

    outbound: OutboundPolicy | None = None  # None: public addresses only
    max_bytes: int = 25 * 2**20
    fetch_timeout_s: float = 20.0


@dataclass(frozen=True, slots=True)
class Chunking:
    size_tokens: int
    overlap_tokens: int


@dataclass(frozen=True, slots=True)
class PreparedFile:
    chunks: list[Chunk]
    text_bytes: int  # the size of the file's text in UTF-8


@contextmanager
def naming(subject: str) -> Iterator[None]:
    """Document errors raised inside name the document: "<subject>: <what is wrong>"."""
    try:
        yield
    except (DocumentError, OutboundRefusedError) as exc:
        exc.detail = f"{subject}: {exc.detail}"
        exc.args = (exc.detail,)
        raise


async def insert_documents(
    vector_io: VectorIO,
    vector_db_id: str,
    documents: Sequence[RAGDocument],
    chunking: Chunking,
    *,
    limits: DocumentLimits,
    batch_size: int,
) -> None:
    """Loads, chunks and stores RAG documents. Every document is prepared before any is stored: a
    bad one fails the whole insert with nothing written. Re-inserting a document replaces it; the
    documents stay out of queries until all of them are written."""
    ids = [d.document_id for d in documents]
    if len(set(ids)) != len(ids):
        raise BadRequestError("documents: every document_id must be unique within one insert.")
    started = time.perf_counter()
    prepared = await documents_chunks(documents, chunking, limits)
    chunks = [chunk for pieces in prepared for chunk in pieces]
    with ExitStack() as hidden:
        for document_id in ids:
            hidden.enter_context(vector_io.hidden_while_written(vector_db_id, document_id))
        await vector_io.delete_documents(vector_db_id, ids)  # one store write, not one per document
        # Batches run across documents: many small documents still make full embedding batches and
        # one store write per batch, not one per document.
        for start in range(0, len(chunks), batch_size):
            await vector_io.insert_chunks(vector_db_id, chunks[start : start + batch_size])
            done = min(start + batch_size, len(chunks))
            if done == len(chunks) or (start // batch_size) % 20 == 19:
                log.info(
                    "Indexed %d/%d chunks of %d documents into '%s' (%.1f s)",
                    done,
                    len(chunks),
                    len(documents),
                    vector_db_id,
                    time.perf_counter() - started,
                )


async def read_document(document: RAGDocument, limits: DocumentLimits) -> LoadedDocument:
    """A RAG document's text; errors name the document ("Document 'd': ...")."""
    with naming(f"Document '{document.document_id}'"):
        return await load_document(_content(document), document.mime_type, **_fetching(limits))


async def document_chunks(document: RAGDocument, chunking: Chunking, limits: DocumentLimits) -> list[Chunk]:
    """A RAG document's chunks, each carrying the document's metadata, its id and (for documents
    given by http(s) URL) its source."""
    return (await documents_chunks([document], chunking, limits))[0]


async def documents_chunks(
    documents: Sequence[RAGDocument], chunking: Chunking, limits: DocumentLimits
) -> list[list[Chunk]]:
    """Each document's chunks (see `document_chunks`). URLs are fetched on the event loop; the rest of
    the work is done in worker-thread calls of many documents each: a thread hop per document cost
    more than chunking a short one (341 passages: 100 ms against 17). A call is made once the fetched
    bodies waiting for it reach FETCHED_BYTES_PER_CALL, so that many large URLs are not all held."""
    out: list[list[Chunk]] = []
    pending: list[tuple[RAGDocument, Source]] = []
    pending_bytes = 0
    for document in documents:
        with naming(f"Document '{document.document_id}'"):
            source = await fetch_source(_content(document), **_fetching(limits))
        pending.append((document, source))
        pending_bytes += len(source.fetched[0]) if source.fetched else 0
        if pending_bytes >= FETCHED_BYTES_PER_CALL:
            out += await asyncio.to_thread(_prepare_all, pending, chunking, limits.max_bytes)
            pending, pending_bytes = [], 0
    if pending:
        out += await asyncio.to_thread(_prepare_all, pending, chunking, limits.max_bytes)
    return out


FETCHED_BYTES_PER_CALL = 8 * 2**20


def _content(document: RAGDocument) -> Any:
    content: Any = document.content
    if hasattr(content, "model_dump"):
        return content.model_dump()
    if isinstance(content, list):
        return [c.model_dump() for c in content]
    return content


def _fetching(limits: DocumentLimits) -> dict[str, Any]:
    return {"outbound": limits.outbound, "max_bytes": limits.max_bytes, "timeout_s": limits.fetch_timeout_s}


def _prepare_all(
    documents: list[tuple[RAGDocument, Source]], chunking: Chunking, max_bytes: int
) -> list[list[Chunk]]:
    out = []
    for document, source in documents:
        with naming(f"Document '{document.document_id}'"):
            loaded = decode_source(source, document.mime_type, max_bytes)
        web = loaded.source if loaded.source and loaded.source.startswith(("http://", "https://")) else None
        metadata = {
            **document.metadata,
            "document_id": document.document_id,
            **({"source": web} if web else {}),
        }
        out.append(_chunks(loaded.text, document.document_id, metadata, chunking, with_token_count=True))
    return out


async def prepare_file(
    data: bytes,
    content_type: str,
    chunking: Chunking,
    *,
    subject: str,
    document_id: str,
    metadata: dict[str, Any],
) -> PreparedFile:
    """A stored file's chunks (parsed and chunked in a worker thread), each with `metadata`."""

    def prepare() -> PreparedFile:
        with naming(subject):
            text = extract_text(data, content_type)
        chunks = _chunks(text, document_id, metadata, chunking, with_token_count=False)
        return PreparedFile(chunks, len(text.encode()))

    return await asyncio.to_thread(prepare)


async def file_text(data: bytes, content_type: str, *, subject: str) -> str:
    """A stored file's text, parsed in a worker thread."""
    with naming(subject):
        return await extract(data, content_type)


async def replace_document(
    vector_io: VectorIO, vector_db_id: str, document_id: str, chunks: list[Chunk], *, batch_size: int
) -> None:
    """Deletes the document's chunks, then inserts `chunks` in batches (each batch embedded at once);
    meanwhile the document is left out of queries, so none sees it half written."""
    with vector_io.hidden_while_written(vector_db_id, document_id):
        await vector_io.delete_documents(vector_db_id, [document_id])
        for start in range(0, len(chunks), batch_size):
            await vector_io.insert_chunks(vector_db_id, chunks[start : start + batch_size])


def _chunks(
    text: str, document_id: str, metadata: dict[str, Any], chunking: Chunking, *, with_token_count: bool
) -> list[Chunk]:
    pieces = chunk_text(
        text,
        document_id=document_id,
        chunk_size_tokens=chunking.size_tokens,
        overlap_tokens=chunking.overlap_tokens,
    )
    return [
        Chunk(content=piece.text, metadata={**metadata, **_piece_fields(piece, with_token_count)})
        for piece in pieces
    ]


def _piece_fields(piece: TextChunk, with_token_count: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"chunk_id": piece.chunk_id, "chunk_index": piece.index}
    if with_token_count:
        fields["token_count"] = piece.token_count
    return fields
