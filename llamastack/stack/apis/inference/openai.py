"""OpenAI-compatible inference types (/v1/openai/v1/*), as the wire contract shapes them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ..common import JsonBool, JsonFloat, JsonInt


class OpenAIChatCompletionContentPartTextParam(BaseModel):
    type: Literal["text"] = "text"
    text: str


class OpenAIImageURL(BaseModel):
    url: str
    detail: str | None = None


class OpenAIChatCompletionContentPartImageParam(BaseModel):
    type: Literal["image_url"] = "image_url"
    image_url: OpenAIImageURL


OpenAIChatCompletionContentPartParam = Annotated[
    OpenAIChatCompletionContentPartTextParam | OpenAIChatCompletionContentPartImageParam,
    Field(discriminator="type"),
]
OpenAIMessageContent = str | list[OpenAIChatCompletionContentPartParam]


class OpenAIChatCompletionToolCallFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class OpenAIChatCompletionToolCall(BaseModel):
    index: JsonInt | None = None
    id: str | None = None
    type: Literal["function"] = "function"
    function: OpenAIChatCompletionToolCallFunction | None = None


class OpenAIUserMessageParam(BaseModel):
    role: Literal["user"] = "user"
    content: OpenAIMessageContent
    name: str | None = None


class OpenAISystemMessageParam(BaseModel):
    role: Literal["system"] = "system"
    content: OpenAIMessageContent
    name: str | None = None


class OpenAIDeveloperMessageParam(BaseModel):
    role: Literal["developer"] = "developer"
    content: OpenAIMessageContent
    name: str | None = None


class OpenAIAssistantMessageParam(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: OpenAIMessageContent | None = None
    name: str | None = None
    tool_calls: list[OpenAIChatCompletionToolCall] | None = None


class OpenAIToolMessageParam(BaseModel):
    role: Literal["tool"] = "tool"
    tool_call_id: str
    content: OpenAIMessageContent


OpenAIMessageParam = Annotated[
    OpenAIUserMessageParam
    | OpenAISystemMessageParam
    | OpenAIAssistantMessageParam
    | OpenAIToolMessageParam
    | OpenAIDeveloperMessageParam,
    Field(discriminator="role"),
]


class OpenAIResponseFormatText(BaseModel):
    type: Literal["text"] = "text"


class OpenAIJSONSchema(BaseModel):
    name: str
    description: str | None = None
    strict: JsonBool | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class OpenAIResponseFormatJSONSchema(BaseModel):
    type: Literal["json_schema"] = "json_schema"
    json_schema: OpenAIJSONSchema


class OpenAIResponseFormatJSONObject(BaseModel):
    type: Literal["json_object"] = "json_object"


OpenAIResponseFormatParam = Annotated[
    OpenAIResponseFormatText | OpenAIResponseFormatJSONSchema | OpenAIResponseFormatJSONObject,
    Field(discriminator="type"),
]

Stop = str | list[str]


class OpenaiChatCompletionRequest(BaseModel):
    model: str
    messages: list[OpenAIMessageParam] = Field(min_length=1)
    frequency_penalty: JsonFloat | None = Field(default=None, ge=-2.0, le=2.0)
    function_call: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    logit_bias: dict[str, Annotated[JsonFloat, Field(ge=-100, le=100)]] | None = Field(
        default=None, description="Token id (as a string) to a bias from -100 to 100 added to its logit."
    )
    logprobs: JsonBool | None = None
    max_completion_tokens: JsonInt | None = Field(default=None, ge=1)
    max_tokens: JsonInt | None = Field(default=None, ge=1)
    n: JsonInt | None = Field(
        default=None,
        ge=1,
        le=16,
        description="How many choices to generate (decoded together by engines that batch).",
    )
    parallel_tool_calls: JsonBool | None = None
    presence_penalty: JsonFloat | None = Field(default=None, ge=-2.0, le=2.0)
    response_format: OpenAIResponseFormatParam | None = None
    seed: JsonInt | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: Stop | None = None
    stream: JsonBool | None = None
    stream_options: dict[str, Any] | None = None
    store: JsonBool | None = Field(
        default=None, description="false: do not keep this completion (GET /v1/openai/v1/chat/completions)."
    )
    temperature: JsonFloat | None = Field(default=None, ge=0.0, le=2.0)
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    top_logprobs: JsonInt | None = Field(default=None, ge=0, le=20)
    top_p: JsonFloat | None = Field(default=None, gt=0.0, le=1.0)
    user: str | None = None


class OpenaiCompletionRequest(BaseModel):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: JsonInt | None = Field(default=None, ge=1, le=1)
    echo: JsonBool | None = None
    frequency_penalty: JsonFloat | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Annotated[JsonFloat, Field(ge=-100, le=100)]] | None = Field(
        default=None, description="Token id (as a string) to a bias from -100 to 100 added to its logit."
    )
    logprobs: JsonBool | JsonInt | None = None
    max_tokens: JsonInt | None = Field(default=None, ge=0)
    n: JsonInt | None = Field(
        default=None,
        ge=1,
        le=16,
        description="How many choices to generate (decoded together by engines that batch).",
    )
    presence_penalty: JsonFloat | None = Field(default=None, ge=-2.0, le=2.0)
    seed: JsonInt | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: Stop | None = None
    stream: JsonBool | None = None
    stream_options: dict[str, Any] | None = None
    temperature: JsonFloat | None = Field(default=None, ge=0.0, le=2.0)
    top_p: JsonFloat | None = Field(default=None, gt=0.0, le=1.0)
    user: str | None = None
    guided_choice: list[str] | None = None
    prompt_logprobs: JsonInt | None = None
    suffix: str | None = None


class OpenaiEmbeddingsRequest(BaseModel):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] | None = "float"
    dimensions: JsonInt | None = Field(default=None, ge=1)
    user: str | None = None


class OpenAITopLogProb(BaseModel):
    token: str
    bytes: list[int] | None = None
    logprob: float


class OpenAITokenLogProb(BaseModel):
    token: str
    bytes: list[int] | None = None
    logprob: float
    top_logprobs: list[OpenAITopLogProb]


class OpenAIChoiceLogprobs(BaseModel):
    content: list[OpenAITokenLogProb] | None = None
    refusal: list[OpenAITokenLogProb] | None = None


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OpenAIChoice(BaseModel):
    message: OpenAIAssistantMessageParam
    finish_reason: str
    index: int
    logprobs: OpenAIChoiceLogprobs | None = None


class OpenAIChatCompletion(BaseModel):
    id: str
    choices: list[OpenAIChoice]
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    usage: OpenAIUsage | None = None


class OpenAICompletionWithInputMessages(BaseModel):
    """A stored chat completion, with the messages it answered."""

    id: str
    choices: list[OpenAIChoice]
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    input_messages: list[OpenAIMessageParam]


class ListOpenAIChatCompletionResponse(BaseModel):
    data: list[OpenAICompletionWithInputMessages]
    has_more: bool
    first_id: str
    last_id: str
    object: Literal["list"] = "list"


class OpenAIChoiceDelta(BaseModel):
    content: str | None = None
    refusal: str | None = None
    role: str | None = None
    tool_calls: list[OpenAIChatCompletionToolCall] | None = None


class OpenAIChunkChoice(BaseModel):
    delta: OpenAIChoiceDelta
    finish_reason: str | None = None
    index: int
    logprobs: OpenAIChoiceLogprobs | None = None


class OpenAIChatCompletionChunk(BaseModel):
    id: str
    choices: list[OpenAIChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    usage: OpenAIUsage | None = None


class OpenAICompletionChoice(BaseModel):
    finish_reason: str | None = None
    text: str
    index: int
    logprobs: OpenAIChoiceLogprobs | None = None


class OpenAICompletion(BaseModel):
    id: str
    choices: list[OpenAICompletionChoice]
    created: int
    model: str
    object: Literal["text_completion"] = "text_completion"
    usage: OpenAIUsage | None = None


class OpenAIEmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class OpenAIEmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbeddingData]
    model: str
    usage: OpenAIEmbeddingUsage
