"""Access to the running stack from route functions: each API typed by its Protocol."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from ..apis.agents import Agents
from ..apis.files import Files
from ..apis.inference.core import Inference
from ..apis.models import Models
from ..apis.responses import Responses
from ..apis.safety import Safety, Shields
from ..apis.tools import RAGToolRuntime, ToolGroups, ToolRuntime
from ..apis.vector_io import VectorDBs, VectorIO
from ..apis.vector_stores import VectorStores
from ..datatypes import Api
from ..errors import BadRequestError
from ..resolver import Stack

T = TypeVar("T")


def stack_of(request: Request) -> Stack:
    stack: Stack = request.app.state.stack
    return stack


def served(part: T | None, api: Api, detail: str | None = None) -> T:
    """The API's part, or a 400 saying the run config has no provider for it."""
    if part is None:
        raise BadRequestError(
            detail or f"This server has no provider for the {api.value} API; add one to the run config."
        )
    return part


def inference_api(request: Request) -> Inference:
    return served(stack_of(request).inference, Api.inference)


def models_api(request: Request) -> Models:
    return served(
        stack_of(request).models,
        Api.inference,
        "This server has no inference provider, so it serves no models.",
    )


def safety_api(request: Request) -> Safety:
    return served(stack_of(request).safety, Api.safety)


def shields_api(request: Request) -> Shields:
    return served(stack_of(request).shields, Api.safety)


def vector_io_api(request: Request) -> VectorIO:
    return served(stack_of(request).vector_io, Api.vector_io)


def vector_dbs_api(request: Request) -> VectorDBs:
    return served(stack_of(request).vector_dbs, Api.vector_io)


def vector_stores_api(request: Request) -> VectorStores:
    return served(stack_of(request).vector_stores, Api.vector_io)


def tool_groups_api(request: Request) -> ToolGroups:
    return served(stack_of(request).tool_runtime, Api.tool_runtime)


def tool_runtime_api(request: Request) -> ToolRuntime:
    return served(stack_of(request).tool_runtime, Api.tool_runtime)


def rag_tool_api(request: Request) -> RAGToolRuntime:
    stack = stack_of(request)
    served(stack.tool_runtime, Api.tool_runtime)
    return served(
        stack.rag_tool,
        Api.tool_runtime,
        "No RAG tool provider is configured (add inline::rag-runtime to tool_runtime).",
    )


def files_api(request: Request) -> Files:
    return served(stack_of(request).files, Api.files)


def agents_api(request: Request) -> Agents:
    return served(stack_of(request).agents, Api.agents)


def responses_api(request: Request) -> Responses:
    return served(
        stack_of(request).responses,
        Api.inference,
        "This server has no inference provider, so it serves no responses.",
    )


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    # Serialise once with pydantic-core; FastAPI would otherwise validate the model a second time.
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
