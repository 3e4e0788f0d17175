"""OpenAI-compatible requests/responses <-> the internal core."""

from __future__ import annotations

import os
import re
import time
from typing import Any, cast

from pydantic_core import to_json

from ..apis.inference import openai as o
from ..apis.inference.core import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    FinishReason,
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
    TokenLogprob,
    ToolCallOut,
    ToolOptions,
    ToolSpec,
    Usage,
)
from ..errors import BadRequestError, UnsupportedError

_ROLE = {"developer": "system"}
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _text(content: o.OpenAIMessageContent | None, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, o.OpenAIChatCompletionContentPartImageParam):
            raise UnsupportedError(
                f"{where} contains an image_url part; images are taken in user messages only."
            )
        parts.append(part.text)
    return "".join(parts)


def _user_content(content: o.OpenAIMessageContent | None, where: str) -> tuple[str, list[str] | None]:
    """A user message's text and its image URLs (http(s) or data URLs), in order."""
    if content is None or isinstance(content, str):
        return content or "", None
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        if isinstance(part, o.OpenAIChatCompletionContentPartImageParam):
            if not part.image_url.url:
                raise BadRequestError(f"{where}.content[{j}].image_url.url is empty; send an image URL.")
            images.append(part.image_url.url)
        else:
            texts.append(part.text)
    return "".join(texts), images or None


def _stop(stop: o.Stop | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > 4:
        raise BadRequestError("stop: at most 4 stop sequences are allowed.")
    return [s for s in stops if s]


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float] | None:
    if not bias:
        return None
    out: dict[int, float] = {}
    for key, value in bias.items():
        if not (key.isascii() and key.isdigit()):
            raise BadRequestError(f"logit_bias: keys are token ids (like \"1234\"), not '{key}'.")
        out[int(key)] = value
    return out


def _json_schema(fmt: o.OpenAIResponseFormatParam | None) -> dict[str, Any] | None:
    if fmt is None or isinstance(fmt, o.OpenAIResponseFormatText):
        return None
    if isinstance(fmt, o.OpenAIResponseFormatJSONObject):
        return {"type": "object"}
    return fmt.json_schema.schema_ or {"type": "object"}


def _tool_spec(tool: dict[str, Any], where: str) -> ToolSpec:
    function = tool.get("function") if tool.get("type", "function") == "function" else None
    if not isinstance(function, dict):
        raise BadRequestError(f"{where}: expected {{'type': 'function', 'function': {{'name': ...}}}}.")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequestError(f"{where}.function.name is required.")
    if not _FUNCTION_NAME.fullmatch(name):
        raise BadRequestError(
            f"{where}.function.name '{name[:80]}' is not a valid function name: use letters, digits, "
            "underscores and dashes, at most 64 characters (as OpenAI requires)."
        )
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise BadRequestError(f"{where}.function.parameters must be a JSON schema object.")
    return ToolSpec(name=name, description=function.get("description"), parameters=parameters)


def _tool_options(req: o.OpenaiChatCompletionRequest) -> ToolOptions | None:
    if req.functions:
        raise UnsupportedError("functions/function_call are deprecated by OpenAI; send tools/tool_choice.")
    if not req.tools:
        if req.tool_choice is not None:
            raise BadRequestError("tool_choice is only allowed when tools are given; send tools or omit it.")
        return None
    specs = [_tool_spec(t, f"tools[{i}]") for i, t in enumerate(req.tools)]
    names = [t.name for t in specs]
    choice = req.tool_choice or "auto"
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or ""
        if choice not in names:
            raise BadRequestError(f"tool_choice names '{choice}', which is not one of the tools: {names}.")
    elif choice not in ("auto", "none", "required"):
        raise BadRequestError(
            f"tool_choice must be auto, none, required or a function object, not '{choice}'."
        )
    return ToolOptions(tools=specs, choice=choice, parallel=req.parallel_tool_calls is not False)


def chat_request_from_openai(req: o.OpenaiChatCompletionRequest) -> ChatRequest:
    messages = []
    for i, m in enumerate(req.messages):
        where = f"messages[{i}]"
        if isinstance(m, o.OpenAIToolMessageParam):
            messages.append(ChatMessage("tool", _text(m.content, where), tool_call_id=m.tool_call_id))
        elif isinstance(m, o.OpenAIAssistantMessageParam):
            calls = [c.model_dump(exclude_none=True) for c in m.tool_calls or []]
            messages.append(ChatMessage("assistant", _text(m.content, where), tool_calls=calls or None))
        elif m.role == "user":
            text, images = _user_content(m.content, where)
            messages.append(ChatMessage("user", text, images=images))
        else:
            messages.append(ChatMessage(_ROLE.get(m.role, m.role), _text(m.content, where)))  # type: ignore[arg-type]
    logprobs = None
    if req.logprobs:
        logprobs = req.top_logprobs or 0
    elif req.top_logprobs:
        raise BadRequestError("top_logprobs requires logprobs: true.")
    return ChatRequest(
        messages=messages,
        sampling=SamplingOptions(
            max_tokens=req.max_completion_tokens or req.max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=req.top_p,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            stop=_stop(req.stop),
            seed=req.seed,
            logprobs=logprobs,
            logit_bias=_logit_bias(req.logit_bias),
        ),
        json_schema=_json_schema(req.response_format),
        tools=_tool_options(req),
    )


def completion_request_from_openai(req: o.OpenaiCompletionRequest) -> CompletionRequest:
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise UnsupportedError(
                "prompt: send one string (batches and token-id prompts are not supported)."
            )
        prompt = prompt[0]
    if req.suffix:
        raise UnsupportedError("suffix (fill-in-the-middle) is not supported.")
    if req.guided_choice:
        raise UnsupportedError("guided_choice is not supported.")
    logprobs = None
    if req.logprobs is not None and req.logprobs is not False:
        logprobs = 0 if req.logprobs is True else int(req.logprobs)
    return CompletionRequest(
        prompt=prompt,
        sampling=SamplingOptions(
            max_tokens=16 if req.max_tokens is None else (req.max_tokens or None),
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=req.top_p,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            stop=_stop(req.stop),
            seed=req.seed,
            logprobs=logprobs,
            logit_bias=_logit_bias(req.logit_bias),
        ),
    )


_random_hex: list[str] = []


def new_id(prefix: str) -> str:
    """``<prefix>-`` and 32 random hex digits (128 bits from os.urandom, as uuid4's). The bytes are
    drawn 4 KiB at a time: one getrandom call per 256 ids rather than one per id."""
    if not _random_hex:
        pool = os.urandom(4096).hex()
        _random_hex.extend(pool[i : i + 32] for i in range(0, len(pool), 32))
    return f"{prefix}-{_random_hex.pop()}"


os.register_at_fork(after_in_child=_random_hex.clear)  # a forked child must not reuse the parent's ids


def _usage(usage: Usage | None) -> o.OpenAIUsage | None:
    if usage is None:
        return None
    return o.OpenAIUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _logprobs(logprobs: list[TokenLogprob] | None) -> o.OpenAIChoiceLogprobs | None:
    if logprobs is None:
        return None
    return o.OpenAIChoiceLogprobs(
        content=[
            o.OpenAITokenLogProb(
                token=lp.token,
                bytes=list(lp.token.encode()),
                logprob=lp.logprob,
                top_logprobs=[
                    o.OpenAITopLogProb(token=t, bytes=list(t.encode()), logprob=v) for t, v in lp.top
                ],
            )
            for lp in logprobs
        ]
    )


def _tool_calls(
    calls: list[ToolCallOut], indexed: bool = False
) -> list[o.OpenAIChatCompletionToolCall] | None:
    if not calls:
        return None
    return [
        o.OpenAIChatCompletionToolCall(
            index=i if indexed else None,
            id=c.id,
            function=o.OpenAIChatCompletionToolCallFunction(name=c.name, arguments=c.arguments),
        )
        for i, c in enumerate(calls)
    ]


def _total_usage(results: list[GenerationResult]) -> Usage:
    # The prompt is read once however many choices there are; completions add up.
    return Usage(
        prompt_tokens=results[0].usage.prompt_tokens,
        completion_tokens=sum(r.usage.completion_tokens for r in results),
    )


def chat_completion(
    results: list[GenerationResult], model: str, *, id: str | None = None, created: int | None = None
) -> o.OpenAIChatCompletion:
    return o.OpenAIChatCompletion(
        id=id or new_id("chatcmpl"),
        created=created if created is not None else int(time.time()),
        model=model,
        choices=[
            o.OpenAIChoice(
                index=i,
                message=o.OpenAIAssistantMessageParam(
                    content=result.text if result.text or not result.tool_calls else None,
                    tool_calls=_tool_calls(result.tool_calls),
                ),
                finish_reason=result.finish_reason,
                logprobs=_logprobs(result.logprobs),
            )
            for i, result in enumerate(results)
        ],
        usage=_usage(_total_usage(results)),
    )


class _UsageTally:
    """Adds up the usage of the n choices of one stream; the total goes out once, after the last."""

    def __init__(self, include_usage: bool, n: int) -> None:
        self.include_usage = include_usage
        self.n = n
        self.finished: list[Usage] = []

    def finish(self, chunk: GenerationChunk) -> Usage | None:
        if chunk.finish_reason is None or chunk.usage is None:
            return None
        self.finished.append(chunk.usage)
        if not self.include_usage or len(self.finished) < self.n:
            return None
        return Usage(
            prompt_tokens=self.finished[0].prompt_tokens,
            completion_tokens=sum(u.completion_tokens for u in self.finished),
        )


class StreamedChoices:
    """Collects a stream's chunks per choice, so the finished stream can be stored whole."""

    def __init__(self, n: int) -> None:
        self.text: list[list[str]] = [[] for _ in range(n)]
        self.calls: list[list[ToolCallOut]] = [[] for _ in range(n)]
        self.logprobs: list[list[TokenLogprob] | None] = [None] * n
        self.finish: list[FinishReason | None] = [None] * n
        self.usage: list[Usage | None] = [None] * n

    def add(self, index: int, chunk: GenerationChunk) -> None:
        if chunk.text:
            self.text[index].append(chunk.text)
        if chunk.tool_calls:
            self.calls[index].extend(chunk.tool_calls)
        if chunk.logprobs:
            self.logprobs[index] = [*(self.logprobs[index] or []), *chunk.logprobs]
        if chunk.finish_reason is not None:
            self.finish[index] = chunk.finish_reason
            self.usage[index] = chunk.usage

    def results(self) -> list[GenerationResult] | None:
        """The choices as results, or None unless every choice finished."""
        if any(f is None for f in self.finish):
            return None
        return [
            GenerationResult(
                text="".join(self.text[i]),
                finish_reason=self.finish[i],  # type: ignore[arg-type]
                usage=self.usage[i] or Usage(prompt_tokens=0, completion_tokens=0),
                logprobs=self.logprobs[i],
                tool_calls=self.calls[i],
            )
            for i in range(len(self.finish))
        ]


class ChatChunkBuilder:
    """Stamps every chunk of one stream with the same id and creation time."""

    def __init__(self, model: str, include_usage: bool, n: int = 1) -> None:
        self.id = new_id("chatcmpl")
        self.created = int(time.time())
        self.model = model
        self.usage = _UsageTally(include_usage, n)
        # A chunk of plain text (most of a stream) as the JSON the chunk model dumps, around the
        # text and the choice index: a stream's other fields are the same in every chunk.
        self._text_head = b'{"id":' + to_json(self.id) + b',"choices":[{"delta":{"content":'
        self._text_mid = b',"refusal":null,"role":null,"tool_calls":null},"finish_reason":null,"index":'
        self._text_tail = (
            b',"logprobs":null}],"object":"chat.completion.chunk","created":'
            + str(self.created).encode()
            + b',"model":'
            + to_json(model)
            + b',"usage":null}'
        )

    def text_json(self, chunk: GenerationChunk, index: int = 0) -> bytes | None:
        """The JSON of ``chunks(chunk)`` when that is one chunk of plain text, without building the
        models (byte for byte what they dump); None for any other chunk."""
        if not chunk.text or chunk.tool_calls or chunk.logprobs or chunk.finish_reason is not None:
            return None
        return self._text_head + to_json(chunk.text) + self._text_mid + str(index).encode() + self._text_tail

    def _chunk(
        self, choices: list[o.OpenAIChunkChoice], usage: Usage | None = None
    ) -> o.OpenAIChatCompletionChunk:
        return o.OpenAIChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=_usage(usage)
        )

    def first(self, index: int = 0) -> o.OpenAIChatCompletionChunk:
        return self._chunk(
            [o.OpenAIChunkChoice(index=index, delta=o.OpenAIChoiceDelta(role="assistant", content=""))]
        )

    def chunks(self, chunk: GenerationChunk, index: int = 0) -> list[o.OpenAIChatCompletionChunk]:
        out = []
        if chunk.tool_calls:
            delta = o.OpenAIChoiceDelta(tool_calls=_tool_calls(chunk.tool_calls, indexed=True))
            out.append(self._chunk([o.OpenAIChunkChoice(index=index, delta=delta)]))
        if chunk.text or chunk.logprobs or chunk.finish_reason:
            out.append(
                self._chunk(
                    [
                        o.OpenAIChunkChoice(
                            index=index,
                            delta=o.OpenAIChoiceDelta(content=chunk.text or None),
                            finish_reason=chunk.finish_reason,
                            logprobs=_logprobs(chunk.logprobs),
                        )
                    ]
                )
            )
        if (total := self.usage.finish(chunk)) is not None:
            out.append(self._chunk([], usage=total))
        return out

    def indexed(self, item: object) -> list[o.OpenAIChatCompletionChunk]:
        """For n > 1 streams, whose items are (choice index, chunk) or a choice's start."""
        index, chunk = cast("tuple[int, GenerationChunk | None]", item)
        return [self.first(index)] if chunk is None else self.chunks(chunk, index)


def completion(results: list[GenerationResult], model: str, echo_prompt: str | None) -> o.OpenAICompletion:
    return o.OpenAICompletion(
        id=new_id("cmpl"),
        created=int(time.time()),
        model=model,
        choices=[
            o.OpenAICompletionChoice(
                index=i,
                text=(echo_prompt or "") + result.text,
                finish_reason=result.finish_reason,
                logprobs=_logprobs(result.logprobs),
            )
            for i, result in enumerate(results)
        ],
        usage=_usage(_total_usage(results)),
    )


class CompletionChunkBuilder:
    def __init__(self, model: str, include_usage: bool, n: int = 1) -> None:
        self.id = new_id("cmpl")
        self.created = int(time.time())
        self.model = model
        self.usage = _UsageTally(include_usage, n)

    def chunks(self, chunk: GenerationChunk, index: int = 0) -> list[o.OpenAICompletion]:
        out = [
            o.OpenAICompletion(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[
                    o.OpenAICompletionChoice(
                        index=index,
                        text=chunk.text,
                        finish_reason=chunk.finish_reason,
                        logprobs=_logprobs(chunk.logprobs),
                    )
                ],
            )
        ]
        if (total := self.usage.finish(chunk)) is not None:
            out.append(
                o.OpenAICompletion(
                    id=self.id, created=self.created, model=self.model, choices=[], usage=_usage(total)
                )
            )
        return out

    def indexed(self, item: object) -> list[o.OpenAICompletion]:
        index, chunk = cast("tuple[int, GenerationChunk | None]", item)
        return [] if chunk is None else self.chunks(chunk, index)
