"""Access to the running stack from route functions."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from ..datatypes import Api
from ..errors import BadRequestError
from ..resolver import Stack


def stack_of(request: Request) -> Stack:
    return request.app.state.stack


def router_of(request: Request, api: Api) -> Any:
    router = request.app.state.stack.routers.get(api)
    if router is None:
        raise BadRequestError(
            f"This server has no provider for the {api.value} API; add one to the run config."
        )
    return router


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    # Serialise once with pydantic-core; FastAPI would otherwise validate the model a second time.
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
