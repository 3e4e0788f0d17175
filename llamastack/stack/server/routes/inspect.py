"""Inspect and Providers APIs."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ...errors import ProviderNotFoundError
from ...resolver import ProviderInstance
from ...secrets import redact
from ...version import __version__
from ..deps import stack_of
from ..route import StackRoute

router = APIRouter(tags=["Inspect"], route_class=StackRoute)


class HealthStatus(StrEnum):
    ok = "OK"
    error = "Error"
    not_implemented = "Not Implemented"


class HealthInfo(BaseModel):
    status: HealthStatus


class VersionInfo(BaseModel):
    version: str


class RouteInfo(BaseModel):
    route: str
    method: str
    provider_types: list[str]


class ListRoutesResponse(BaseModel):
    data: list[RouteInfo]


class ProviderInfo(BaseModel):
    api: str
    provider_id: str
    provider_type: str
    config: dict[str, Any]
    health: dict[str, Any]


class ListProvidersResponse(BaseModel):
    data: list[ProviderInfo]


@router.get("/v1/health", response_model=HealthInfo, summary="Get the health of the service.")
async def health() -> HealthInfo:
    return HealthInfo(status=HealthStatus.ok)


@router.get("/v1/version", response_model=VersionInfo, summary="Get the version of the service.")
async def version() -> VersionInfo:
    return VersionInfo(version=__version__)


@router.get("/v1/inspect/routes", response_model=ListRoutesResponse, summary="List all routes.")
async def list_routes(request: Request) -> ListRoutesResponse:
    return ListRoutesResponse(
        data=[
            RouteInfo(route=path, method=method, provider_types=providers)
            for path, method, providers in request.app.state.api_routes
        ]
    )


providers_router = APIRouter(tags=["Providers"], route_class=StackRoute)


async def _info(instance: ProviderInstance) -> ProviderInfo:
    checker = getattr(instance.impl, "health", None)
    try:
        health = await checker() if checker else {"status": "Not Implemented"}
    except Exception as exc:
        health = {"status": "Error", "message": str(exc)}
    return ProviderInfo(
        api=instance.api.value,
        provider_id=instance.provider_id,
        provider_type=instance.spec.provider_type,
        config=redact(instance.config),  # secrets show as ********
        health=health,
    )


@providers_router.get("/v1/providers", response_model=ListProvidersResponse, summary="List all providers.")
async def list_providers(request: Request) -> ListProvidersResponse:
    return ListProvidersResponse(data=[await _info(p) for p in stack_of(request).provider_list()])


@providers_router.get(
    "/v1/providers/{provider_id}", response_model=ProviderInfo, summary="Get details of one provider."
)
async def inspect_provider(request: Request, provider_id: str) -> ProviderInfo:
    instances = stack_of(request).provider_list()
    for instance in instances:
        if instance.provider_id == provider_id:
            return await _info(instance)
    raise ProviderNotFoundError(provider_id, [p.provider_id for p in instances])
