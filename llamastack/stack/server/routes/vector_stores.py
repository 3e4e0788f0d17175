"""OpenAI-compatible vector store routes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...apis import vector_stores as vs
from ..deps import json_response, vector_stores_api
from ..route import StackRoute

router = APIRouter(tags=["VectorIO"], route_class=StackRoute)
_BASE = "/v1/openai/v1/vector_stores"
_STORE = _BASE + "/{vector_store_id}"
_FILE = _STORE + "/files/{file_id}"


_stores = vector_stores_api


@router.get(_BASE, response_model=vs.VectorStoreListResponse, summary="Returns a list of vector stores.")
async def list_vector_stores(
    request: Request,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
) -> Response:
    return json_response(await _stores(request).list(limit, order, after, before))


@router.post(_BASE, response_model=vs.VectorStoreObject, summary="Creates a vector store.")
async def create_vector_store(request: Request, body: vs.OpenaiCreateVectorStoreRequest) -> Response:
    return json_response(await _stores(request).create(body))


@router.get(_STORE, response_model=vs.VectorStoreObject, summary="Retrieves a vector store.")
async def get_vector_store(request: Request, vector_store_id: str) -> Response:
    return json_response(await _stores(request).get(vector_store_id))


@router.post(_STORE, response_model=vs.VectorStoreObject, summary="Updates a vector store.")
async def update_vector_store(
    request: Request, vector_store_id: str, body: vs.OpenaiUpdateVectorStoreRequest
) -> Response:
    return json_response(await _stores(request).update(vector_store_id, body))


@router.delete(_STORE, response_model=vs.VectorStoreDeleteResponse, summary="Delete a vector store.")
async def delete_vector_store(request: Request, vector_store_id: str) -> Response:
    return json_response(await _stores(request).delete(vector_store_id))


@router.post(
    _STORE + "/search", response_model=vs.VectorStoreSearchResponsePage, summary="Search a vector store."
)
async def search_vector_store(
    request: Request, vector_store_id: str, body: vs.OpenaiSearchVectorStoreRequest
) -> Response:
    return json_response(await _stores(request).search(vector_store_id, body))


@router.get(
    _STORE + "/files", response_model=vs.VectorStoreListFilesResponse, summary="List files in a vector store."
)
async def list_vector_store_files(
    request: Request,
    vector_store_id: str,
    limit: int = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
    filter: Literal["completed", "in_progress", "cancelled", "failed"] | None = Query(default=None),
) -> Response:
    return json_response(
        await _stores(request).list_files(vector_store_id, limit, order, after, before, filter)
    )


@router.post(
    _STORE + "/files", response_model=vs.VectorStoreFileObject, summary="Attach a file to a vector store."
)
async def attach_file(
    request: Request, vector_store_id: str, body: vs.OpenaiAttachFileToVectorStoreRequest
) -> Response:
    return json_response(await _stores(request).attach_file(vector_store_id, body))


@router.get(_FILE, response_model=vs.VectorStoreFileObject, summary="Retrieves a vector store file.")
async def get_vector_store_file(request: Request, vector_store_id: str, file_id: str) -> Response:
    return json_response(await _stores(request).get_file(vector_store_id, file_id))


@router.post(_FILE, response_model=vs.VectorStoreFileObject, summary="Updates a vector store file.")
async def update_vector_store_file(
    request: Request, vector_store_id: str, file_id: str, body: vs.OpenaiUpdateVectorStoreFileRequest
) -> Response:
    return json_response(await _stores(request).update_file(vector_store_id, file_id, body.attributes))


@router.delete(_FILE, response_model=vs.VectorStoreFileDeleteResponse, summary="Delete a vector store file.")
async def delete_vector_store_file(request: Request, vector_store_id: str, file_id: str) -> Response:
    return json_response(await _stores(request).delete_file(vector_store_id, file_id))


@router.get(
    _FILE + "/content",
    response_model=vs.VectorStoreFileContentsResponse,
    summary="Retrieves a vector store file's contents.",
)
async def vector_store_file_content(request: Request, vector_store_id: str, file_id: str) -> Response:
    return json_response(await _stores(request).file_content(vector_store_id, file_id))
