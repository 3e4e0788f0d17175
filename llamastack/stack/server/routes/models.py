"""Models API, native and OpenAI-compatible."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ... import access
from ...apis.models import (
    ListModelsResponse,
    Model,
    OpenAIListModelsResponse,
    OpenAIModel,
    RefreshModelsRequest,
    RefreshModelsResponse,
    RegisterModelRequest,
)
from ...errors import ForbiddenError
from ..deps import json_response, models_api, stack_of
from ..route import StackRoute

router = APIRouter(tags=["Models"], route_class=StackRoute)


_models = models_api


@router.get("/v1/models", response_model=ListModelsResponse, summary="List all models.")
async def list_models(request: Request) -> Response:
    return json_response(await _models(request).list_models())


@router.post("/v1/models", response_model=Model, summary="Register a model.")
async def register_model(request: Request, body: RegisterModelRequest) -> Response:
    return json_response(await _models(request).register_model(body))


@router.post(
    "/v1/models:refresh",
    response_model=RefreshModelsResponse,
    summary="List the engines' models now and register the new ones (an extension of v0.2.12).",
)
async def refresh_models(request: Request, body: RefreshModelsRequest | None = None) -> Response:
    """Asks each remote engine (or the one of `provider_id`) which models it serves: models it lists
    that no registered model maps to are registered (discovered), discovered ones it dropped are
    unregistered. Discovered models are shared by every API key, so this takes an admin key."""
    _models(request)  # a 400 without inference providers
    if not access.may_manage_run_config():
        raise ForbiddenError(
            "Refreshing the engines' models changes what every API key sees; use an admin key."
        )
    discovery = stack_of(request).model_discovery
    assert discovery is not None  # built with the models table
    return json_response(
        RefreshModelsResponse(data=await discovery.refresh(body.provider_id if body else None))
    )


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
