"""OpenAI Responses API (/v1/openai/v1/responses): create (streamed or not), list, get, input items,
delete (an OpenAI operation the v0.2.12 contract lacks)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...apis import responses as r
from ...apis.common import Order
from ..deps import json_response, responses_api
from ..route import StackRoute
from ..sse import typed_event_response

router = APIRouter(tags=["Responses"], route_class=StackRoute)

_STREAM: dict[str, Any] = {"text/event-stream": {}}


@router.post(
    "/v1/openai/v1/responses",
    response_model=r.OpenAIResponseObject,
    responses={200: {"content": _STREAM}},
    summary="Create a new OpenAI response.",
)
async def create_response(request: Request, body: r.CreateOpenaiResponseRequest) -> Response:
    api = responses_api(request)
    if body.stream:
        return typed_event_response(await api.create_stream(body))
    return json_response(await api.create(body))


@router.get(
    "/v1/openai/v1/responses",
    response_model=r.ListOpenAIResponseObject,
    summary="List all OpenAI responses.",
)
async def list_responses(
    request: Request,
    after: str | None = None,
    limit: int = 50,
    model: str | None = None,
    order: Order = Order.desc,
) -> Response:
    return json_response(
        await responses_api(request).list(after=after, limit=limit, order=order, model=model)
    )


@router.get(
    "/v1/openai/v1/responses/{response_id}",
    response_model=r.OpenAIResponseObject,
    summary="Retrieve an OpenAI response by its ID.",
)
async def get_response(request: Request, response_id: str) -> Response:
    return json_response(await responses_api(request).get(response_id))


@router.get(
    "/v1/openai/v1/responses/{response_id}/input_items",
    response_model=r.ListOpenAIResponseInputItem,
    summary="List input items for a given OpenAI response.",
)
async def list_response_input_items(
    request: Request,
    response_id: str,
    after: str | None = None,
    before: str | None = None,
    include: list[str] | None = Query(default=None),
    limit: int = 20,
    order: Order = Order.desc,
) -> Response:
    page = await responses_api(request).input_items(
        response_id, after=after, before=before, include=include, limit=limit, order=order
    )
    return json_response(page)


@router.delete(
    "/v1/openai/v1/responses/{response_id}",
    response_model=r.OpenAIDeleteResponseObject,
    summary="Delete an OpenAI response by its ID (an OpenAI operation beyond the v0.2.12 contract).",
)
async def delete_response(request: Request, response_id: str) -> Response:
    return json_response(await responses_api(request).delete(response_id))
