"""Models API, native and OpenAI-compatible."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...apis.models import (
    ListModelsResponse,
    Model,
    OpenAIListModelsResponse,
    OpenAIModel,
    RegisterModelRequest,
)
from ..deps import json_response, models_api
from ..route import StackRoute

router = APIRouter(tags=["Models"], route_class=StackRoute)


_models = models_api


@router.get("/v1/models", response_model=ListModelsResponse, summary="List all models.")
async def list_models(request: Request) -> Response:
    return json_response(await _models(request).list_models())


@router.post("/v1/models", response_model=Model, summary="Register a model.")
async def register_model(request: Request, body: RegisterModelRequest) -> Response:
    return json_response(await _models(request).register_model(body))


@router.get("/v1/models/{model_id:path}", response_model=Model, summary="Get a model by its identifier.")
async def get_model(request: Request, model_id: str) -> Response:
    return json_response(await _models(request).get_model(model_id))


@router.delete("/v1/models/{model_id:path}", summary="Unregister a model.")
async def unregister_model(request: Request, model_id: str) -> None:
    await _models(request).unregister_model(model_id)


@router.get(
    "/v1/openai/v1/models",
    response_model=OpenAIListModelsResponse,
    summary="List models using the OpenAI API.",
)
async def openai_list_models(request: Request) -> Response:
    created = request.app.state.started_at
    data = [
        OpenAIModel(id=m.identifier, created=created, owned_by=m.provider_id)
        for m in (await _models(request).list_models()).data
    ]
    return json_response(OpenAIListModelsResponse(data=data))
