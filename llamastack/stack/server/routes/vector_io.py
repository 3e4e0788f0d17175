"""VectorDBs, VectorIO and the RAG tool's routes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...apis.vector_io import (
    InsertChunksRequest,
    InsertRequest,
    ListVectorDBsResponse,
    QueryChunksRequest,
    QueryChunksResponse,
    QueryRequest,
    RAGQueryResult,
    RegisterVectorDbRequest,
    VectorDB,
)
from ..deps import json_response, rag_tool_api, vector_dbs_api, vector_io_api
from ..route import StackRoute

router = APIRouter(route_class=StackRoute)


_vector_io = vector_io_api
_dbs = vector_dbs_api


@router.get(
    "/v1/vector-dbs", response_model=ListVectorDBsResponse, tags=["VectorDBs"], summary="List vector dbs."
)
async def list_vector_dbs(request: Request) -> Response:
    return json_response(await _dbs(request).list_vector_dbs())


@router.post("/v1/vector-dbs", response_model=VectorDB, tags=["VectorDBs"], summary="Register a vector db.")
async def register_vector_db(request: Request, body: RegisterVectorDbRequest) -> Response:
    return json_response(await _dbs(request).register_vector_db(body))


@router.get(
    "/v1/vector-dbs/{vector_db_id:path}",
    response_model=VectorDB,
    tags=["VectorDBs"],
    summary="Get a vector db.",
)
async def get_vector_db(request: Request, vector_db_id: str) -> Response:
    return json_response(await _dbs(request).get_vector_db(vector_db_id))


@router.delete("/v1/vector-dbs/{vector_db_id:path}", tags=["VectorDBs"], summary="Unregister a vector db.")
async def unregister_vector_db(request: Request, vector_db_id: str) -> None:
    await _dbs(request).unregister_vector_db(vector_db_id)


@router.post("/v1/vector-io/insert", tags=["VectorIO"], summary="Insert chunks into a vector database.")
async def insert_chunks(request: Request, body: InsertChunksRequest) -> None:
    await _vector_io(request).insert_chunks(body.vector_db_id, body.chunks)


@router.post(
    "/v1/vector-io/query", response_model=QueryChunksResponse, tags=["VectorIO"], summary="Query chunks."
)
async def query_chunks(request: Request, body: QueryChunksRequest) -> Response:
    return json_response(await _vector_io(request).query_chunks(body.vector_db_id, body.query, body.params))


@router.post(
    "/v1/tool-runtime/rag-tool/insert", tags=["ToolRuntime"], summary="Index documents for the RAG tool."
)
async def rag_insert(request: Request, body: InsertRequest) -> None:
    await rag_tool_api(request).insert(body.documents, body.vector_db_id, body.chunk_size_in_tokens)


@router.post(
    "/v1/tool-runtime/rag-tool/query",
    response_model=RAGQueryResult,
    tags=["ToolRuntime"],
    summary="Query the RAG system for context.",
)
async def rag_query(request: Request, body: QueryRequest) -> Response:
    return json_response(
        await rag_tool_api(request).query(body.content, body.vector_db_ids, body.query_config)
    )
