"""VectorDBs, VectorIO and the RAG tool: storing chunks with embeddings and finding them again."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
