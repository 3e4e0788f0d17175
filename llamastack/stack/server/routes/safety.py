"""Shields and Safety APIs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...apis.safety import (
    ListShieldsResponse,
    RegisterShieldRequest,
    RunShieldRequest,
    RunShieldResponse,
    Shield,
)
from ..deps import json_response, safety_api, shields_api
from ..route import StackRoute

router = APIRouter(route_class=StackRoute)


_shields = shields_api


@router.get("/v1/shields", response_model=ListShieldsResponse, tags=["Shields"], summary="List all shields.")
async def list_shields(request: Request) -> Response:
    return json_response(await _shields(request).list_shields())


@router.post("/v1/shields", response_model=Shield, tags=["Shields"], summary="Register a shield.")
async def register_shield(request: Request, body: RegisterShieldRequest) -> Response:
    return json_response(await _shields(request).register_shield(body))


@router.get(
    "/v1/shields/{identifier:path}",
    response_model=Shield,
    tags=["Shields"],
    summary="Get a shield by its identifier.",
)
async def get_shield(request: Request, identifier: str) -> Response:
    return json_response(await _shields(request).get_shield(identifier))


@router.delete("/v1/shields/{identifier:path}", tags=["Shields"], summary="Unregister a shield.")
async def unregister_shield(request: Request, identifier: str) -> None:
    await _shields(request).unregister_shield(identifier)


@router.post(
    "/v1/safety/run-shield", response_model=RunShieldResponse, tags=["Safety"], summary="Run a shield."
)
async def run_shield(request: Request, body: RunShieldRequest) -> Response:
    safety = safety_api(request)
    return json_response(await safety.run_shield(body.shield_id, body.messages, body.params))
