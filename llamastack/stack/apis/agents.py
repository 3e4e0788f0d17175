"""Agents API: agents, sessions, turns and their steps, and the streamed turn events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field

from .common import URL, InterleavedContent, InterleavedContentItem, JsonBool, JsonInt
from .inference.native import (
    CompletionMessage,
    ContentDelta,
    ResponseFormat,
    SamplingParams,
    ToolCall,
    ToolChoice,
    ToolConfig,
    ToolPromptFormat,
    ToolResponseMessage,
    UserMessage,
)
from .safety import SafetyViolation
from .tools import ToolDef


class AgentToolGroupWithArgs(BaseModel):
    name: str
    args: dict[str, Any]


AgentTool = str | AgentToolGroupWithArgs


class AgentConfig(BaseModel):
    sampling_params: SamplingParams | None = None
    input_shields: list[str] | None = None
    output_shields: list[str] | None = None
    toolgroups: list[AgentTool] | None = None
    client_tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    tool_prompt_format: ToolPromptFormat | None = None
    tool_config: ToolConfig | None = None
    max_infer_iters: JsonInt | None = Field(default=10, ge=1, le=100)
    model: str
    instructions: str
    name: str | None = None
    enable_session_persistence: JsonBool | None = False
    response_format: ResponseFormat | None = None


class CreateAgentRequest(BaseModel):
    agent_config: AgentConfig


class AgentCreateResponse(BaseModel):
    agent_id: str


class Agent(BaseModel):
    agent_id: str
    agent_config: AgentConfig
    created_at: datetime


class CreateAgentSessionRequest(BaseModel):
    session_name: str


class AgentSessionCreateResponse(BaseModel):
    session_id: str


class StepType(StrEnum):
    inference = "inference"
    tool_execution = "tool_execution"
    shield_call = "shield_call"
    memory_retrieval = "memory_retrieval"


class _Step(BaseModel):
    turn_id: str
    step_id: str
    started_at: datetime | None = None
    completed_at: datetime | None = None


class InferenceStep(_Step):
    step_type: Literal["inference"] = "inference"
    model_response: CompletionMessage


class ToolResponse(BaseModel):
    call_id: str
    tool_name: str
    content: InterleavedContent
    metadata: dict[str, Any] | None = None


class ToolExecutionStep(_Step):
    step_type: Literal["tool_execution"] = "tool_execution"
    tool_calls: list[ToolCall]
    tool_responses: list[ToolResponse]


class ShieldCallStep(_Step):
    step_type: Literal["shield_call"] = "shield_call"
    violation: SafetyViolation | None = None


class MemoryRetrievalStep(_Step):
    step_type: Literal["memory_retrieval"] = "memory_retrieval"
    vector_db_ids: str
    inserted_context: InterleavedContent


Step = Annotated[
    InferenceStep | ToolExecutionStep | ShieldCallStep | MemoryRetrievalStep, Field(discriminator="step_type")
]


class Attachment(BaseModel):
    content: str | InterleavedContentItem | list[InterleavedContentItem] | URL
    mime_type: str


class Document(BaseModel):
    content: str | InterleavedContentItem | list[InterleavedContentItem] | URL
    mime_type: str


TurnInputMessage = Annotated[UserMessage | ToolResponseMessage, Field(discriminator="role")]


class Turn(BaseModel):
    turn_id: str
    session_id: str
    input_messages: list[TurnInputMessage]
    steps: list[Step]
    output_message: CompletionMessage
    output_attachments: list[Attachment] | None = None
    started_at: datetime
    completed_at: datetime | None = None


class Session(BaseModel):
    session_id: str
    session_name: str
    turns: list[Turn]
    started_at: datetime


class CreateAgentTurnRequest(BaseModel):
    messages: list[TurnInputMessage] = Field(min_length=1)
    stream: JsonBool | None = False
    documents: list[Document] | None = None
    toolgroups: list[AgentTool] | None = None
    tool_config: ToolConfig | None = None


class ResumeAgentTurnRequest(BaseModel):
    tool_responses: list[ToolResponse] = Field(min_length=1)
    stream: JsonBool | None = False


class AgentStepResponse(BaseModel):
    step: Step


class PaginatedResponse(BaseModel):
    data: list[dict[str, Any]]
    has_more: bool
    url: str | None = None


class StepStartPayload(BaseModel):
    event_type: Literal["step_start"] = "step_start"
    step_type: StepType
    step_id: str
    metadata: dict[str, Any] | None = None


class StepProgressPayload(BaseModel):
    event_type: Literal["step_progress"] = "step_progress"
    step_type: StepType
    step_id: str
    delta: ContentDelta


class StepCompletePayload(BaseModel):
    event_type: Literal["step_complete"] = "step_complete"
    step_type: StepType
    step_id: str
    step_details: Step


class TurnStartPayload(BaseModel):
    event_type: Literal["turn_start"] = "turn_start"
    turn_id: str


class TurnCompletePayload(BaseModel):
    event_type: Literal["turn_complete"] = "turn_complete"
    turn: Turn


class TurnAwaitingInputPayload(BaseModel):
    event_type: Literal["turn_awaiting_input"] = "turn_awaiting_input"
    turn: Turn


Payload = Annotated[
    StepStartPayload
    | StepProgressPayload
    | StepCompletePayload
    | TurnStartPayload
    | TurnCompletePayload
    | TurnAwaitingInputPayload,
    Field(discriminator="event_type"),
]


class AgentTurnResponseEvent(BaseModel):
    payload: Payload


class AgentTurnResponseStreamChunk(BaseModel):
    event: AgentTurnResponseEvent


class Agents(Protocol):
    """The Agents API: what the routes call and an agents provider implements (the stack runs one
    agents provider, so it is the API itself; it reaches other APIs only through their Protocols)."""

    async def create_agent(self, config: AgentConfig) -> AgentCreateResponse: ...

    async def list_agents(self, start_index: int | None, limit: int | None) -> PaginatedResponse: ...

    async def get_agent(self, agent_id: str) -> Agent: ...

    async def delete_agent(self, agent_id: str) -> None: ...

    async def create_session(self, agent_id: str, session_name: str) -> AgentSessionCreateResponse: ...

    async def list_sessions(
        self, agent_id: str, start_index: int | None, limit: int | None
    ) -> PaginatedResponse: ...

    async def get_session(self, agent_id: str, session_id: str, turn_ids: list[str] | None) -> Session: ...

    async def delete_session(self, agent_id: str, session_id: str) -> None: ...

    async def create_turn(
        self, agent_id: str, session_id: str, request: CreateAgentTurnRequest
    ) -> AsyncIterator[AgentTurnResponseStreamChunk]:
        """Checks the request (typed errors before any event), then returns the turn's events."""
        ...

    async def resume_turn(
        self, agent_id: str, session_id: str, turn_id: str, request: ResumeAgentTurnRequest
    ) -> AsyncIterator[AgentTurnResponseStreamChunk]: ...

    async def get_turn(self, agent_id: str, session_id: str, turn_id: str) -> Turn: ...

    async def get_step(
        self, agent_id: str, session_id: str, turn_id: str, step_id: str
    ) -> AgentStepResponse: ...
