"""OpenAI Responses API (/v1/openai/v1/responses): wire types, stream events and the Protocol.

Shapes follow the v0.2.12 contract (``OpenAIResponse*`` schemas); where it is silent they follow
OpenAI's Responses API (usage, incomplete_details, the stream's content-part and lifecycle events,
deleting a response).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from .common import JsonBool, JsonFloat, JsonInt, Order

ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed"]


class ResponseInputText(BaseModel):
    type: Literal["input_text"] = "input_text"
    text: str


class ResponseInputImage(BaseModel):
    type: Literal["input_image"] = "input_image"
    detail: Literal["low", "high", "auto"] = "auto"
    image_url: str | None = None


class ResponseOutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)


InputContentPart = Annotated[ResponseInputText | ResponseInputImage, Field(discriminator="type")]


class ResponseMessage(BaseModel):
    """An input or output message; OpenAI gives both the same ``type``."""

    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[InputContentPart] | list[ResponseOutputText]
    id: str | None = None
    status: str | None = None


class ResponseFunctionToolCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class ResponseFunctionToolCallOutput(BaseModel):
    type: Literal["function_call_output"] = "function_call_output"
    call_id: str
    output: str
    id: str | None = None
    status: str | None = None


class FileSearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, str | float | bool] | None = None


class ResponseFileSearchCall(BaseModel):
    """A server-side search of vector stores; ``results`` only when ``include`` asks for them."""

    type: Literal["file_search_call"] = "file_search_call"
    id: str
    queries: list[str]
    status: str
    results: list[FileSearchResult] | None = None


class ResponseWebSearchCall(BaseModel):
    type: Literal["web_search_call"] = "web_search_call"
    id: str
    status: str


class MCPListToolsTool(BaseModel):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None


class ResponseMCPListTools(BaseModel):
    type: Literal["mcp_list_tools"] = "mcp_list_tools"
    id: str
    server_label: str
    tools: list[MCPListToolsTool]
    error: str | None = None


class ResponseMCPCall(BaseModel):
    type: Literal["mcp_call"] = "mcp_call"
    id: str
    server_label: str
    name: str
    arguments: str
    output: str | None = None
    error: str | None = None


class ResponseMCPApprovalRequest(BaseModel):
    """An MCP tool call waiting for the client's approval (require_approval asks for it)."""

    type: Literal["mcp_approval_request"] = "mcp_approval_request"
    id: str
    server_label: str
    name: str
    arguments: str


class ResponseMCPApprovalResponse(BaseModel):
    type: Literal["mcp_approval_response"] = "mcp_approval_response"
    approval_request_id: str
    approve: JsonBool
    reason: str | None = None
    id: str | None = None


def _item_type(value: Any) -> str:
    # OpenAI's "easy" input messages ({"role": ..., "content": ...}) may leave out the type.
    found = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return str(found)


ResponseInputItem = Annotated[
    Annotated[ResponseMessage, Tag("message")]
    | Annotated[ResponseFunctionToolCall, Tag("function_call")]
    | Annotated[ResponseFunctionToolCallOutput, Tag("function_call_output")]
    | Annotated[ResponseFileSearchCall, Tag("file_search_call")]
    | Annotated[ResponseWebSearchCall, Tag("web_search_call")]
    | Annotated[ResponseMCPListTools, Tag("mcp_list_tools")]
    | Annotated[ResponseMCPCall, Tag("mcp_call")]
    | Annotated[ResponseMCPApprovalRequest, Tag("mcp_approval_request")]
    | Annotated[ResponseMCPApprovalResponse, Tag("mcp_approval_response")],
    Discriminator(_item_type),
]
ResponseOutputItem = Annotated[
    ResponseMessage
    | ResponseFunctionToolCall
    | ResponseFileSearchCall
    | ResponseWebSearchCall
    | ResponseMCPListTools
    | ResponseMCPCall
    | ResponseMCPApprovalRequest,
    Field(discriminator="type"),
]
# What ``include`` may ask for; the others OpenAI names concern tools or outputs this server lacks.
INCLUDABLE = frozenset({"file_search_call.results"})


class ResponseTextFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    type: Literal["text", "json_schema", "json_object"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: JsonBool | None = None


class ResponseText(BaseModel):
    format: ResponseTextFormat | None = None


class ResponseError(BaseModel):
    code: str
    message: str


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, int] = Field(default_factory=lambda: {"cached_tokens": 0})
    output_tokens_details: dict[str, int] = Field(default_factory=lambda: {"reasoning_tokens": 0})


class IncompleteDetails(BaseModel):
    reason: str


class CreateOpenaiResponseRequest(BaseModel):
    input: str | list[ResponseInputItem]
    model: str
    instructions: str | None = None
    previous_response_id: str | None = None
    store: JsonBool | None = True
    stream: JsonBool | None = False
    temperature: JsonFloat | None = Field(default=None, ge=0.0, le=2.0)
    text: ResponseText | None = None
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description="function tools (run by the client), and file_search, web_search and mcp tools "
        "(run by the server, which feeds their results back to the model).",
    )
    max_infer_iters: JsonInt | None = Field(default=10, ge=1)
    # Beyond the v0.2.12 contract, as OpenAI has them.
    top_p: JsonFloat | None = Field(default=None, gt=0.0, le=1.0)
    max_output_tokens: JsonInt | None = Field(default=None, ge=1)
    tool_choice: str | dict[str, Any] | None = Field(
        default=None,
        description="auto, none, required, {type: function, name}, {type: file_search|web_search}, or "
        "{type: mcp, server_label, name} to force one tool.",
    )
    include: list[str] | None = Field(
        default=None, description="Extra output to include: file_search_call.results."
    )
    metadata: dict[str, str] | None = Field(
        default=None, description="Up to 16 string pairs kept with the response (keys <= 64, values <= 512)."
    )
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = Field(default=None, max_length=256)
    parallel_tool_calls: JsonBool | None = None
    # An extension: shields run over the input and over the output; a violation ends the response.
    guardrails: list[str] | None = Field(
        default=None,
        description="Shield ids run over the input and the output (an extension beyond OpenAI's API).",
    )


class OpenAIResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    model: str
    status: ResponseStatus
    output: list[ResponseOutputItem]
    error: ResponseError | None = None
    parallel_tool_calls: bool = False
    previous_response_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: ResponseText = Field(default_factory=lambda: ResponseText(format=ResponseTextFormat()))
    truncation: str | None = None
    user: str | None = None
    # Beyond the v0.2.12 contract, as OpenAI has them.
    instructions: str | None = None
    usage: ResponseUsage | None = None
    incomplete_details: IncompleteDetails | None = None
    metadata: dict[str, str] | None = None
    max_output_tokens: int | None = None


class OpenAIResponseObjectWithInput(OpenAIResponseObject):
    """A stored response with every input item the model saw (the chain before it included)."""

    input: list[ResponseInputItem]


class ListOpenAIResponseObject(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIResponseObjectWithInput]
    has_more: bool
    first_id: str
    last_id: str


class ListOpenAIResponseInputItem(BaseModel):
    object: Literal["list"] = "list"
    data: list[ResponseInputItem]
    # Beyond the v0.2.12 contract, as OpenAI has them (the SDKs page with them).
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class OpenAIDeleteResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


# --- stream events (OpenAI's names and order) ---------------------------------------------------


class _Event(BaseModel):
    sequence_number: int


class ResponseLifecycleEvent(_Event):
    """response.created / in_progress / completed / incomplete / failed: the response as it stands."""

    type: Literal[
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    ]
    response: OpenAIResponseObject


class ResponseOutputItemEvent(_Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    response_id: str
    output_index: int
    item: ResponseOutputItem


class ResponseContentPartEvent(_Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: ResponseOutputText


class ResponseOutputTextDeltaEvent(_Event):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class ResponseOutputTextDoneEvent(_Event):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class ResponseFunctionCallArgumentsDeltaEvent(_Event):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    item_id: str
    output_index: int
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(_Event):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    output_index: int
    arguments: str


class ResponseToolCallProgressEvent(_Event):
    """A server-side tool call's progress, in OpenAI's names."""

    type: Literal[
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_list_tools.failed",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
    ]
    item_id: str
    output_index: int


class ResponseMCPCallArgumentsDeltaEvent(_Event):
    type: Literal["response.mcp_call_arguments.delta"] = "response.mcp_call_arguments.delta"
    item_id: str
    output_index: int
    delta: str


class ResponseMCPCallArgumentsDoneEvent(_Event):
    type: Literal["response.mcp_call_arguments.done"] = "response.mcp_call_arguments.done"
    item_id: str
    output_index: int
    arguments: str


ResponseStreamEvent = (
    ResponseLifecycleEvent
    | ResponseOutputItemEvent
    | ResponseContentPartEvent
    | ResponseOutputTextDeltaEvent
    | ResponseOutputTextDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | ResponseToolCallProgressEvent
    | ResponseMCPCallArgumentsDeltaEvent
    | ResponseMCPCallArgumentsDoneEvent
)


class Responses(Protocol):
    """The Responses API as routes call it. ``create_stream`` has checked the request and the model
    has started answering when it returns, so bad input and engine errors keep their HTTP status."""

    async def create(self, request: CreateOpenaiResponseRequest) -> OpenAIResponseObject: ...

    async def create_stream(
        self, request: CreateOpenaiResponseRequest
    ) -> AsyncIterator[ResponseStreamEvent]: ...

    async def get(self, response_id: str) -> OpenAIResponseObject: ...

    async def list(
        self, *, after: str | None, limit: int, order: Order, model: str | None
    ) -> ListOpenAIResponseObject: ...

    async def input_items(
        self,
        response_id: str,
        *,
        after: str | None,
        before: str | None,
        include: Sequence[str] | None,
        limit: int,
        order: Order,
    ) -> ListOpenAIResponseInputItem: ...

    async def delete(self, response_id: str) -> OpenAIDeleteResponseObject: ...
