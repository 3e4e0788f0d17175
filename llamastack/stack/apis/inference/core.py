"""The one internal inference surface every provider implements.

It is OpenAI-shaped (messages with string content, OpenAI sampling knobs, finish reasons),
plus the few native knobs OpenAI lacks (top_k, repetition penalty, grammar). The native
v0.2.12 routes, the OpenAI routes, agents and safety all translate to and from it, so a
provider implements chat, completion and embeddings once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..models import Model

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    # Images (URLs or data URLs) that come before the text; text-only engines reject them.
    images: list[str] | None = None


@dataclass(slots=True)
class SamplingOptions:
    """temperature 0 (or None with no top_p/top_k) means greedy decoding."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: int | None = None  # None: no logprobs; N: the sampled token plus the top N
    logit_bias: dict[int, float] | None = None  # token id -> bias added to its logit


@dataclass(slots=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON schema of its arguments."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


ToolPromptFormat = Literal["json", "function_tag", "python_list"]


@dataclass(slots=True)
class ToolOptions:
    tools: list[ToolSpec]
    # "auto", "required", "none", or the name of the one tool that must be called.
    choice: str = "auto"
    prompt_format: ToolPromptFormat | None = None  # None: the model family's own default
    system_message_behavior: Literal["append", "replace"] = "append"
    parallel: bool = True

    @property
    def active(self) -> bool:
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        return self.active and self.choice != "auto"


@dataclass(slots=True)
class ChatRequest:
    messages: list[ChatMessage]
    sampling: SamplingOptions
    # Constrained decoding (JSON schema or GBNF); providers that cannot honour it say so.
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    tools: ToolOptions | None = None


@dataclass(slots=True)
class CompletionRequest:
    prompt: str
    sampling: SamplingOptions
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ToolCallOut:
    id: str
    name: str
    arguments: str  # a JSON object, as text


@dataclass(slots=True)
class GenerationResult:
    text: str
    finish_reason: FinishReason
    usage: Usage
    # end_of_message: the model ended with an end-of-message token (Llama's <|eom_id|>).
    end_of_message: bool = False
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCallOut] = field(default_factory=list)


@dataclass(slots=True)
class GenerationChunk:
    """A piece of a stream; the last one carries finish_reason and usage.

    Tool calls arrive whole: ``tool_call_text`` is the raw text the model wrote for them and
    ``tool_calls`` the parsed calls (or ``tool_call_failed`` when that text did not parse, in
    which case the same text also comes as ``text``).
    """

    text: str = ""
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    end_of_message: bool = False
    tool_call_text: str = ""
    tool_calls: list[ToolCallOut] | None = None
    tool_call_failed: bool = False


@dataclass(slots=True)
class EmbeddingResult:
    embeddings: list[list[float]]
    prompt_tokens: int


class InferenceProvider(Protocol):
    """What an inference provider implements; the router hands it the resolved Model."""

    async def register_model(self, model: Model) -> Model:
        """Validates and loads the model; returns it with metadata filled in (e.g. context length)."""
        ...

    async def unregister_model(self, model: Model) -> None: ...

    async def chat(self, model: Model, request: ChatRequest) -> GenerationResult: ...

    def chat_stream(self, model: Model, request: ChatRequest) -> AsyncIterator[GenerationChunk]: ...

    async def complete(self, model: Model, request: CompletionRequest) -> GenerationResult: ...

    def complete_stream(self, model: Model, request: CompletionRequest) -> AsyncIterator[GenerationChunk]: ...

    async def embed(
        self, model: Model, texts: list[str], *, truncate: Literal["none", "start", "end"] | None = None
    ) -> EmbeddingResult: ...


class Inference(Protocol):
    """The Inference API as routes and other providers call it: by model id. The router resolves the
    id to a Model, checks its kind, and calls the owning InferenceProvider."""

    async def chat(self, model_id: str, request: ChatRequest) -> GenerationResult: ...

    def chat_stream(self, model_id: str, request: ChatRequest) -> AsyncIterator[GenerationChunk]: ...

    async def complete(self, model_id: str, request: CompletionRequest) -> GenerationResult: ...

    def complete_stream(
        self, model_id: str, request: CompletionRequest
    ) -> AsyncIterator[GenerationChunk]: ...

    async def embed(
        self,
        model_id: str,
        texts: list[str],
        *,
        truncate: Literal["none", "start", "end"] | None = None,
        dimensions: int | None = None,
    ) -> EmbeddingResult: ...
