"""Native v0.2.12 inference types (/v1/inference/*), as the wire contract shapes them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ..common import InterleavedContent, InterleavedContentItem, JsonBool, JsonFloat, JsonInt


class StopReason(StrEnum):
    end_of_turn = "end_of_turn"
    end_of_message = "end_of_message"
    out_of_tokens = "out_of_tokens"


class ToolChoice(StrEnum):
    auto = "auto"
    required = "required"
    none = "none"


class ToolPromptFormat(StrEnum):
    json = "json"
    function_tag = "function_tag"
    python_list = "python_list"


class GreedySamplingStrategy(BaseModel):
    type: Literal["greedy"] = "greedy"


class TopPSamplingStrategy(BaseModel):
    type: Literal["top_p"] = "top_p"
    temperature: JsonFloat | None = Field(default=None, ge=0.0)
    top_p: JsonFloat | None = Field(default=0.95, gt=0.0, le=1.0)


class TopKSamplingStrategy(BaseModel):
    type: Literal["top_k"] = "top_k"
    top_k: JsonInt = Field(ge=1, le=1_000_000)


SamplingStrategy = Annotated[
    GreedySamplingStrategy | TopPSamplingStrategy | TopKSamplingStrategy, Field(discriminator="type")
]


class SamplingParams(BaseModel):
    strategy: SamplingStrategy = Field(default_factory=GreedySamplingStrategy)
    max_tokens: JsonInt | None = Field(default=0, ge=0)
    repetition_penalty: JsonFloat | None = Field(default=1.0, gt=0.0)
    stop: list[str] | None = Field(default=None, max_length=4)


class ToolCall(BaseModel):
    call_id: str
    tool_name: str
    arguments: str | dict[str, Any]
    arguments_json: str | None = None


class ToolParamDefinition(BaseModel):
    param_type: str
    description: str | None = None
    required: JsonBool | None = True
    default: Any = None


class ToolDefinition(BaseModel):
    tool_name: str
    description: str | None = None
    parameters: dict[str, ToolParamDefinition] | None = None


class ToolConfig(BaseModel):
    tool_choice: str | None = "auto"
    tool_prompt_format: ToolPromptFormat | None = None
    system_message_behavior: Literal["append", "replace"] | None = "append"


class JsonSchemaResponseFormat(BaseModel):
    type: Literal["json_schema"] = "json_schema"
    json_schema: dict[str, Any]


class GrammarResponseFormat(BaseModel):
    type: Literal["grammar"] = "grammar"
    bnf: dict[str, Any]


ResponseFormat = Annotated[JsonSchemaResponseFormat | GrammarResponseFormat, Field(discriminator="type")]


class UserMessage(BaseModel):
    role: Literal["user"] = "user"
    content: InterleavedContent
    context: InterleavedContent | None = None


class SystemMessage(BaseModel):
    role: Literal["system"] = "system"
    content: InterleavedContent


class ToolResponseMessage(BaseModel):
    role: Literal["tool"] = "tool"
    call_id: str
    content: InterleavedContent


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: InterleavedContent
    stop_reason: StopReason = StopReason.end_of_turn
    tool_calls: list[ToolCall] | None = Field(default_factory=list)


Message = Annotated[
    UserMessage | SystemMessage | ToolResponseMessage | CompletionMessage, Field(discriminator="role")
]


class LogProbConfig(BaseModel):
    top_k: JsonInt | None = Field(default=0, ge=0, le=20)


class ChatCompletionRequest(BaseModel):
    model_id: str
    messages: list[Message] = Field(min_length=1)
    sampling_params: SamplingParams | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    tool_prompt_format: ToolPromptFormat | None = None
    response_format: ResponseFormat | None = None
    stream: JsonBool | None = False
    logprobs: LogProbConfig | None = None
    tool_config: ToolConfig | None = None


class CompletionRequest(BaseModel):
    model_id: str
    content: InterleavedContent
    sampling_params: SamplingParams | None = None
    response_format: ResponseFormat | None = None
    stream: JsonBool | None = False
    logprobs: LogProbConfig | None = None


# A batch runs as parallel sequences on engines that batch; the cap keeps one request's work bounded.
MAX_BATCH = 64


class BatchChatCompletionRequest(BaseModel):
    model_id: str
    messages_batch: list[Annotated[list[Message], Field(min_length=1)]] = Field(
        min_length=1, max_length=MAX_BATCH
    )
    sampling_params: SamplingParams | None = None
    tools: list[ToolDefinition] | None = None
    tool_config: ToolConfig | None = None
    response_format: ResponseFormat | None = None
    logprobs: LogProbConfig | None = None


class BatchCompletionRequest(BaseModel):
    model_id: str
    content_batch: list[InterleavedContent] = Field(min_length=1, max_length=MAX_BATCH)
    sampling_params: SamplingParams | None = None
    response_format: ResponseFormat | None = None
    logprobs: LogProbConfig | None = None


class EmbeddingsRequest(BaseModel):
    model_id: str
    contents: list[str] | list[InterleavedContentItem] = Field(min_length=1)
    text_truncation: Literal["none", "start", "end"] | None = None
    output_dimension: JsonInt | None = Field(default=None, ge=1)
    task_type: Literal["query", "document"] | None = None


class MetricInResponse(BaseModel):
    metric: str
    value: int | float
    unit: str | None = None


class TokenLogProbs(BaseModel):
    logprobs_by_token: dict[str, float]


class ChatCompletionResponse(BaseModel):
    metrics: list[MetricInResponse] | None = None
    completion_message: CompletionMessage
    logprobs: list[TokenLogProbs] | None = None


class BatchChatCompletionResponse(BaseModel):
    batch: list[ChatCompletionResponse]


class TextDelta(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ImageDelta(BaseModel):
    type: Literal["image"] = "image"
    image: str


class ToolCallParseStatus(StrEnum):
    started = "started"
    in_progress = "in_progress"
    failed = "failed"
    succeeded = "succeeded"


class ToolCallDelta(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    tool_call: str | ToolCall
    parse_status: ToolCallParseStatus


ContentDelta = Annotated[TextDelta | ImageDelta | ToolCallDelta, Field(discriminator="type")]


class ChatCompletionResponseEventType(StrEnum):
    start = "start"
    complete = "complete"
    progress = "progress"


class ChatCompletionResponseEvent(BaseModel):
    event_type: ChatCompletionResponseEventType
    delta: ContentDelta
    logprobs: list[TokenLogProbs] | None = None
    stop_reason: StopReason | None = None


class ChatCompletionResponseStreamChunk(BaseModel):
    metrics: list[MetricInResponse] | None = None
    event: ChatCompletionResponseEvent


class CompletionResponse(BaseModel):
    metrics: list[MetricInResponse] | None = None
    content: str
    stop_reason: StopReason
    logprobs: list[TokenLogProbs] | None = None


class CompletionResponseStreamChunk(BaseModel):
    metrics: list[MetricInResponse] | None = None
    delta: str
    stop_reason: StopReason | None = None
    logprobs: list[TokenLogProbs] | None = None


class BatchCompletionResponse(BaseModel):
    batch: list[CompletionResponse]


class EmbeddingsResponse(BaseModel):
    embeddings: list[list[float]]
