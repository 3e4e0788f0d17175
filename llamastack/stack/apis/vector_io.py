"""VectorDBs, VectorIO and the RAG tool: storing chunks with embeddings and finding them again."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field

from .common import (
    URL,
    InterleavedContent,
    InterleavedContentItem,
    JsonFloat,
    JsonInt,
    Resource,
    ResourceType,
)


class VectorDB(Resource):
    type: Literal[ResourceType.vector_db] = ResourceType.vector_db
    embedding_model: str
    embedding_dimension: int


class ListVectorDBsResponse(BaseModel):
    data: list[VectorDB]


class RegisterVectorDbRequest(BaseModel):
    vector_db_id: str = Field(min_length=1, max_length=200)
    embedding_model: str
    embedding_dimension: JsonInt | None = Field(default=None, ge=1)
    provider_id: str | None = None
    provider_vector_db_id: str | None = None


class Chunk(BaseModel):
    content: InterleavedContent
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding: list[float] | None = None


class InsertChunksRequest(BaseModel):
    vector_db_id: str
    chunks: list[Chunk] = Field(min_length=1)
    ttl_seconds: JsonInt | None = Field(default=None, ge=1)


class QueryChunksRequest(BaseModel):
    vector_db_id: str
    query: InterleavedContent
    params: dict[str, Any] | None = None


class QueryChunksResponse(BaseModel):
    chunks: list[Chunk]
    scores: list[float]


class RAGDocument(BaseModel):
    document_id: str = Field(min_length=1)
    content: str | InterleavedContentItem | list[InterleavedContentItem] | URL
    mime_type: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class InsertRequest(BaseModel):
    documents: list[RAGDocument] = Field(min_length=1)
    vector_db_id: str
    chunk_size_in_tokens: JsonInt = Field(ge=16, le=8192)


class DefaultRAGQueryGeneratorConfig(BaseModel):
    type: Literal["default"] = "default"
    separator: str = " "


class LLMRAGQueryGeneratorConfig(BaseModel):
    type: Literal["llm"] = "llm"
    model: str
    template: str


RAGQueryGeneratorConfig = Annotated[
    DefaultRAGQueryGeneratorConfig | LLMRAGQueryGeneratorConfig, Field(discriminator="type")
]


class RRFRanker(BaseModel):
    type: Literal["rrf"] = "rrf"
    impact_factor: JsonFloat = Field(default=60.0, gt=0)


class WeightedRanker(BaseModel):
    type: Literal["weighted"] = "weighted"
    alpha: JsonFloat = Field(default=0.5, ge=0, le=1)


Ranker = Annotated[RRFRanker | WeightedRanker, Field(discriminator="type")]

DEFAULT_CHUNK_TEMPLATE = "Result {index}\nContent: {chunk.content}\nMetadata: {metadata}\n"


class RAGQueryConfig(BaseModel):
    query_generator_config: RAGQueryGeneratorConfig = Field(default_factory=DefaultRAGQueryGeneratorConfig)
    max_tokens_in_context: JsonInt = Field(default=4096, ge=1)
    max_chunks: JsonInt = Field(default=5, ge=1, le=100)
    chunk_template: str = DEFAULT_CHUNK_TEMPLATE
    mode: str | None = None
    ranker: Ranker | None = None


class QueryRequest(BaseModel):
    content: InterleavedContent
    vector_db_ids: list[str] = Field(min_length=1)
    query_config: RAGQueryConfig | None = None


class RAGQueryResult(BaseModel):
    content: InterleavedContent | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class VectorDBs(Protocol):
    """The VectorDBs API: which vector dbs exist, with which embedding model, in which provider."""

    async def list_vector_dbs(self) -> ListVectorDBsResponse: ...

    async def get_vector_db(self, vector_db_id: str) -> VectorDB: ...

    async def register_vector_db(self, request: RegisterVectorDbRequest) -> VectorDB:
        """Registering the same db again returns it and keeps its data."""
        ...

    async def unregister_vector_db(self, vector_db_id: str) -> None: ...


class VectorIO(Protocol):
    """The VectorIO API: chunks in (embedded by the db's model unless they carry embeddings) and out."""

    async def insert_chunks(self, vector_db_id: str, chunks: list[Chunk]) -> int:
        """Stores the chunks (one per id: a chunk with the same document and text replaces the old
        one); returns how many were stored."""
        ...

    async def delete_documents(self, vector_db_id: str, document_ids: Sequence[str]) -> None:
        """Deletes every chunk of these documents (in as few store writes as the store allows)."""
        ...

    async def query_chunks(
        self, vector_db_id: str, query: InterleavedContent, params: dict[str, Any] | None
    ) -> QueryChunksResponse: ...

    def hidden_while_written(self, vector_db_id: str, document_id: str) -> AbstractContextManager[None]:
        """While entered, the document's chunks are left out of queries (a write in progress)."""
        ...


@dataclass(slots=True)
class StoredChunk:
    """A chunk as a vector_io provider stores it: embedded, with its id and text for keyword search."""

    id: str  # stable: the same content of the same document keeps its id
    chunk: Chunk
    embedding: list[float]
    document_id: str | None
    text: str  # the chunk's text, for keyword search


class VectorIOProvider(Protocol):
    """What a vector_io provider implements: storing and searching, nothing else (embeddings are
    computed by the router, hybrid fusion is done by the stack)."""

    async def register_vector_db(self, db: VectorDB) -> VectorDB:
        """Opens (or creates) the db's storage; must keep existing data (called at every start)."""
        ...

    async def unregister_vector_db(self, db: VectorDB) -> None:
        """Drops the db and its data."""
        ...

    async def upsert(self, db: VectorDB, items: list[StoredChunk]) -> None: ...

    async def delete_documents(self, db: VectorDB, document_ids: Sequence[str]) -> None:
        """Deletes every chunk of these documents: one write for all of them, none when they have no
        chunks (an ingest of many new documents clears each first)."""
        ...

    async def query(self, db: VectorDB, embedding: list[float], k: int) -> list[tuple[Chunk, float]]:
        """The k nearest chunks with cosine similarity (higher is closer), best first."""
        ...

    async def keyword_query(self, db: VectorDB, text: str, k: int) -> list[tuple[Chunk, float]]:
        """The k chunks that best match the query's words, with BM25 scores (k1 1.2, b 0.75; above 0,
        higher is better), best first. Chunks sharing no word with the query are left out. Hybrid
        search is not the provider's business: the stack fuses this list with `query`'s."""
        ...
