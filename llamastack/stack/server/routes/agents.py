"""Agents API routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...apis import agents as a
from ..deps import agents_api, json_response
from ..route import StackRoute
from ..sse import sse_response

router = APIRouter(tags=["Agents"], route_class=StackRoute)
_STREAM: dict[str, Any] = {"text/event-stream": {}}
_SESSION = "/v1/agents/{agent_id}/session/{session_id}"


async def _respond(events: AsyncIterator[a.AgentTurnResponseStreamChunk], stream: bool | None) -> Response:
    if stream:
        first = await anext(events)  # errors before the turn starts still get a proper status

        async def all_events() -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
            yield first
            async for event in events:
                yield event

        return sse_response([], all_events(), lambda e: [e], done_marker=False)
    turn = None
    async for event in events:
        payload = event.event.payload
        if isinstance(payload, a.TurnCompletePayload | a.TurnAwaitingInputPayload):
            turn = payload.turn
    assert turn is not None
    return json_response(turn)


@router.post("/v1/agents", response_model=a.AgentCreateResponse, summary="Create an agent.")
async def create_agent(request: Request, body: a.CreateAgentRequest) -> Response:
    return json_response(await agents_api(request).create_agent(body.agent_config))


@router.get("/v1/agents", response_model=a.PaginatedResponse, summary="List all agents.")
async def list_agents(request: Request, start_index: int | None = None, limit: int | None = None) -> Response:
    return json_response(await agents_api(request).list_agents(start_index, limit))


@router.get("/v1/agents/{agent_id}", response_model=a.Agent, summary="Describe an agent.")
async def get_agent(request: Request, agent_id: str) -> Response:
    return json_response(await agents_api(request).get_agent(agent_id))


@router.delete("/v1/agents/{agent_id}", summary="Delete an agent and its sessions.")
async def delete_agent(request: Request, agent_id: str) -> None:
    await agents_api(request).delete_agent(agent_id)


@router.post(
    "/v1/agents/{agent_id}/session", response_model=a.AgentSessionCreateResponse, summary="Create a session."
)
async def create_session(request: Request, agent_id: str, body: a.CreateAgentSessionRequest) -> Response:
    return json_response(await agents_api(request).create_session(agent_id, body.session_name))


@router.get("/v1/agents/{agent_id}/sessions", response_model=a.PaginatedResponse, summary="List sessions.")
async def list_sessions(
    request: Request, agent_id: str, start_index: int | None = None, limit: int | None = None
) -> Response:
    return json_response(await agents_api(request).list_sessions(agent_id, start_index, limit))


@router.get(_SESSION, response_model=a.Session, summary="Retrieve a session with its turns.")
async def get_session(
    request: Request, agent_id: str, session_id: str, turn_ids: list[str] | None = Query(default=None)
) -> Response:
    return json_response(await agents_api(request).get_session(agent_id, session_id, turn_ids))


@router.delete(_SESSION, summary="Delete a session.")
async def delete_session(request: Request, agent_id: str, session_id: str) -> None:
    await agents_api(request).delete_session(agent_id, session_id)


@router.post(
    _SESSION + "/turn",
    response_model=a.Turn,
    responses={200: {"content": _STREAM}},
    summary="Create a new turn.",
)
async def create_turn(
    request: Request, agent_id: str, session_id: str, body: a.CreateAgentTurnRequest
) -> Response:
    return await _respond(await agents_api(request).create_turn(agent_id, session_id, body), body.stream)


@router.get(_SESSION + "/turn/{turn_id}", response_model=a.Turn, summary="Retrieve a turn.")
async def get_turn(request: Request, agent_id: str, session_id: str, turn_id: str) -> Response:
    return json_response(await agents_api(request).get_turn(agent_id, session_id, turn_id))


@router.post(
    _SESSION + "/turn/{turn_id}/resume",
    response_model=a.Turn,
    responses={200: {"content": _STREAM}},
    summary="Resume a turn waiting for client tool responses.",
)
async def resume_turn(
    request: Request, agent_id: str, session_id: str, turn_id: str, body: a.ResumeAgentTurnRequest
) -> Response:
    return await _respond(
        await agents_api(request).resume_turn(agent_id, session_id, turn_id, body), body.stream
    )


@router.get(
    _SESSION + "/turn/{turn_id}/step/{step_id}",
    response_model=a.AgentStepResponse,
    summary="Retrieve a step.",
)
async def get_step(request: Request, agent_id: str, session_id: str, turn_id: str, step_id: str) -> Response:
    return json_response(await agents_api(request).get_step(agent_id, session_id, turn_id, step_id))
