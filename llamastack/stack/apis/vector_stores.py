"""OpenAI-compatible vector stores (/v1/openai/v1/vector_stores*), as the wire contract shapes them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field


class VectorStoreFileCounts(BaseModel):
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    in_progress: int = 0
    total: int = 0


class VectorStoreObject(BaseModel):
    id: str
    object: str = "vector_store"
    created_at: int
    name: str | None = None
    usage_bytes: int = 0
    file_counts: VectorStoreFileCounts = Field(default_factory=VectorStoreFileCounts)
    status: str = "completed"
    expires_after: dict[str, Any] | None = None
    expires_at: int | None = None
    last_active_at: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class VectorStoreListResponse(BaseModel):
    object: str = "list"
    data: list[VectorStoreObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VectorStoreChunkingStrategyAuto(BaseModel):
    type: Literal["auto"] = "auto"


class VectorStoreChunkingStrategyStaticConfig(BaseModel):
    chunk_overlap_tokens: int = Field(default=400, ge=0)
    max_chunk_size_tokens: int = Field(default=800, ge=100, le=4096)


class VectorStoreChunkingStrategyStatic(BaseModel):
    type: Literal["static"] = "static"
    static: VectorStoreChunkingStrategyStaticConfig


VectorStoreChunkingStrategy = Annotated[
    VectorStoreChunkingStrategyAuto | VectorStoreChunkingStrategyStatic, Field(discriminator="type")
]


class OpenaiCreateVectorStoreRequest(BaseModel):
    name: str
    file_ids: list[str] | None = None
    expires_after: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    embedding_model: str | None = None
    embedding_dimension: int | None = Field(default=None, ge=1)
    provider_id: str | None = None
    provider_vector_db_id: str | None = None


class OpenaiUpdateVectorStoreRequest(BaseModel):
    name: str | None = None
    expires_after: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class VectorStoreDeleteResponse(BaseModel):
    id: str
    object: str = "vector_store.deleted"
    deleted: bool = True


class VectorStoreFileLastError(BaseModel):
    code: Literal["server_error", "rate_limit_exceeded"]
    message: str


VectorStoreFileStatus = Literal["completed", "in_progress", "cancelled", "failed"]


class VectorStoreFileObject(BaseModel):
    id: str
    object: str = "vector_store.file"
    attributes: dict[str, Any] = Field(default_factory=dict)
    chunking_strategy: VectorStoreChunkingStrategy
    created_at: int
    last_error: VectorStoreFileLastError | None = None
    status: VectorStoreFileStatus
    usage_bytes: int = 0
    vector_store_id: str


class VectorStoreListFilesResponse(BaseModel):
    object: str = "list"
    data: list[VectorStoreFileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class OpenaiAttachFileToVectorStoreRequest(BaseModel):
    file_id: str = Field(min_length=1)
    attributes: dict[str, Any] | None = None
    chunking_strategy: VectorStoreChunkingStrategy | None = None


class OpenaiUpdateVectorStoreFileRequest(BaseModel):
    attributes: dict[str, Any]


class VectorStoreFileDeleteResponse(BaseModel):
    id: str
    object: str = "vector_store.file.deleted"
    deleted: bool = True


class VectorStoreContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class VectorStoreFileContentsResponse(BaseModel):
    file_id: str
    filename: str
    attributes: dict[str, Any]
    content: list[VectorStoreContent]


class RankingOptions(BaseModel):
    ranker: str | None = Field(
        default=None,
        description="How hybrid search fuses its two rankings: 'rrf' (the default; OpenAI's 'none', "
        "'auto' and 'default-2024-11-15' mean it too) or 'weighted'.",
    )
    score_threshold: float | None = Field(
        default=0.0, description="Keep results scoring at least this, on the search mode's scale."
    )


class OpenaiSearchVectorStoreRequest(BaseModel):
    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int | None = Field(default=10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool | None = False
    # From the v0.2.13 contract on.
    search_mode: str | None = Field(
        default=None, description='The search mode: "vector" (the default), "keyword" or "hybrid".'
    )


class VectorStoreSearchResponse(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, str | float | bool] | None = None
    content: list[VectorStoreContent]


class VectorStoreSearchResponsePage(BaseModel):
    object: str = "vector_store.search_results.page"
    search_query: str
    data: list[VectorStoreSearchResponse]
    has_more: bool = False
    next_page: str | None = None


class VectorStores(Protocol):
    """The OpenAI vector stores API: a vector store is a vector db plus its records (name, metadata,
    files with their attributes); files come from the Files API and are ingested into the db."""

    async def list(
        self, limit: int = 20, order: str = "desc", after: str | None = None, before: str | None = None
    ) -> VectorStoreListResponse: ...

    async def create(self, request: OpenaiCreateVectorStoreRequest) -> VectorStoreObject: ...

    async def get(self, vector_store_id: str) -> VectorStoreObject: ...

    async def update(
        self, vector_store_id: str, request: OpenaiUpdateVectorStoreRequest
    ) -> VectorStoreObject: ...

    async def delete(self, vector_store_id: str) -> VectorStoreDeleteResponse: ...

    async def search(
        self, vector_store_id: str, request: OpenaiSearchVectorStoreRequest
    ) -> VectorStoreSearchResponsePage: ...

    async def list_files(
        self,
        vector_store_id: str,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
        status: str | None = None,
    ) -> VectorStoreListFilesResponse: ...

    async def attach_file(
        self, vector_store_id: str, request: OpenaiAttachFileToVectorStoreRequest
    ) -> VectorStoreFileObject: ...

    async def get_file(self, vector_store_id: str, file_id: str) -> VectorStoreFileObject: ...

    async def update_file(
        self, vector_store_id: str, file_id: str, attributes: dict[str, Any]
    ) -> VectorStoreFileObject: ...

    async def delete_file(self, vector_store_id: str, file_id: str) -> VectorStoreFileDeleteResponse: ...

    async def file_content(self, vector_store_id: str, file_id: str) -> VectorStoreFileContentsResponse: ...
