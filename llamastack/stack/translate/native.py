"""Native v0.2.12 inference requests/responses <-> the internal core."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json

from ..apis.common import ImageContentItem, InterleavedContent, content_has_image, content_to_text
from ..apis.inference import native as n
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
from ..apis.tools import ToolDef
from ..errors import BadRequestError, UnsupportedError


def sampling_from_native(
    params: n.SamplingParams | None, logprobs: n.LogProbConfig | None
) -> SamplingOptions:
    options = SamplingOptions(temperature=0.0)
    if logprobs is not None:
        options.logprobs = max(1, logprobs.top_k or 0)
    if params is None:
        return options
    strategy = params.strategy
    if isinstance(strategy, n.TopPSamplingStrategy):
        options.temperature = 1.0 if strategy.temperature is None else strategy.temperature
        options.top_p = strategy.top_p
    elif isinstance(strategy, n.TopKSamplingStrategy):
        options.temperature = 1.0
        options.top_k = strategy.top_k
    options.max_tokens = params.max_tokens or None
    options.repetition_penalty = params.repetition_penalty
    options.stop = list(params.stop or [])
    return options


def _text(content: InterleavedContent | None, where: str) -> str:
    if content_has_image(content):
        raise UnsupportedError(
            f"{where} contains an image; images are taken only in the content of user messages of a "
            "chat (to a vision model such as Llama-3.2-11B-Vision-Instruct). Send text here."
        )
    return content_to_text(content)


def image_ref(item: ImageContentItem, where: str) -> str:
    """An image content item as the core carries it: its URL, or its base64 data as a data URL."""
    if item.image.url is not None and item.image.url.uri:
        return item.image.url.uri
    if item.image.data:
        return f"data:image;base64,{item.image.data}"
    raise BadRequestError(f"{where}: an image item needs image.url.uri or image.data (base64).")


def _user_images(content: InterleavedContent | None, where: str) -> list[str]:
    items = content if isinstance(content, list) else [content]
    return [image_ref(item, where) for item in items if isinstance(item, ImageContentItem)]


def messages_from_native(messages: list[n.Message]) -> list[ChatMessage]:
    """Images are kept on user messages (the engine decides whether its model takes them); in other
    roles they are refused."""
    out: list[ChatMessage] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if isinstance(m, n.UserMessage):
            text = content_to_text(m.content)
            if m.context is not None:
                text = f"{text}\n\n{_text(m.context, where)}"
            images = _user_images(m.content, where)
            out.append(ChatMessage("user", text, images=images or None))
        elif isinstance(m, n.SystemMessage):
            out.append(ChatMessage("system", _text(m.content, where)))
        elif isinstance(m, n.ToolResponseMessage):
            out.append(ChatMessage("tool", _text(m.content, where), tool_call_id=m.call_id))
        else:
            calls = [
                {
                    "id": c.call_id,
                    "type": "function",
                    "function": {
                        "name": c.tool_name,
                        "arguments": c.arguments_json or _json_args(c.arguments),
                    },
                }
                for c in (m.tool_calls or [])
            ]
            out.append(ChatMessage("assistant", _text(m.content, where), tool_calls=calls or None))
    return out


def _json_args(arguments: str | dict[str, Any]) -> str:
    import json

    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def response_format_to_core(fmt: n.ResponseFormat | None) -> tuple[dict[str, Any] | None, str | None]:
    if fmt is None:
        return None, None
    if isinstance(fmt, n.JsonSchemaResponseFormat):
        return fmt.json_schema, None
    grammar = fmt.bnf.get("root") if isinstance(fmt.bnf.get("root"), str) else None
    if grammar is None:
        raise BadRequestError(
            "response_format.bnf must hold the GBNF grammar text under the key 'root', "
            'e.g. {"root": "root ::= \\"yes\\" | \\"no\\""}.'
        )
    return None, grammar


# Native param_type names (Python's or JSON schema's) to JSON schema types.
PARAM_TYPES = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "object",
    "object": "object",
}


def tool_spec_from_native(tool: n.ToolDefinition) -> ToolSpec:
    """The one conversion of declared tool parameters into the JSON schema the core offers a model
    (`x-param-type` keeps the declared type name for the prompt formats that show it)."""
    properties: dict[str, dict[str, Any]] = {}
    required: list[str] = []
    for name, param in (tool.parameters or {}).items():
        prop: dict[str, Any] = {"x-param-type": param.param_type}
        if (kind := PARAM_TYPES.get(param.param_type.lower())) is not None:
            prop["type"] = kind
        if param.description:
            prop["description"] = param.description
        if param.default is not None:
            prop["default"] = param.default
        properties[name] = prop
        if param.required is not False:
            required.append(name)
    return ToolSpec(
        name=tool.tool_name,
        description=tool.description,
        parameters={"type": "object", "properties": properties, "required": required},
    )


def tool_spec_from_def(tool: ToolDef) -> ToolSpec:
    """A tool of the Tools API (a tool group's, or an agent's client tool) as the core offers it: its
    own JSON schema when it carries one (MCP tools), else its parameters converted as a native tool
    definition's are."""
    if tool.metadata and isinstance(tool.metadata.get("input_schema"), dict):
        return ToolSpec(
            name=tool.name, description=tool.description, parameters=tool.metadata["input_schema"]
        )
    parameters = {
        p.name: n.ToolParamDefinition(
            param_type=p.parameter_type, description=p.description, required=p.required, default=p.default
        )
        for p in tool.parameters or []
    }
    return tool_spec_from_native(
        n.ToolDefinition(tool_name=tool.name, description=tool.description, parameters=parameters)
    )


def tool_options_from_native(req: n.ChatCompletionRequest) -> ToolOptions | None:
    config = req.tool_config or n.ToolConfig()
    fields = req.tool_config.model_fields_set if req.tool_config else set()
    choice = (
        config.tool_choice if "tool_choice" in fields else (req.tool_choice or config.tool_choice or "auto")
    )
    if not req.tools:
        asked = str(getattr(choice, "value", choice))
        if asked not in ("auto", "none"):
            raise BadRequestError(
                f"tool_choice '{asked}' needs tools, and the request has none; send tools or omit it."
            )
        return None
    prompt_format = config.tool_prompt_format or req.tool_prompt_format
    specs = [tool_spec_from_native(t) for t in req.tools]
    names = [t.name for t in specs]
    choice = str(getattr(choice, "value", choice))
    if choice not in ("auto", "required", "none") and choice not in names:
        raise BadRequestError(
            f"tool_choice '{choice}' is neither auto, required, none nor one of the tools: {names}."
        )
    return ToolOptions(
        tools=specs,
        choice=choice,
        prompt_format=prompt_format.value if prompt_format else None,
        system_message_behavior=config.system_message_behavior or "append",
    )


def chat_request_from_native(req: n.ChatCompletionRequest) -> ChatRequest:
    schema, grammar = response_format_to_core(req.response_format)
    return ChatRequest(
        messages=messages_from_native(req.messages),
        sampling=sampling_from_native(req.sampling_params, req.logprobs),
        json_schema=schema,
        grammar=grammar,
        tools=tool_options_from_native(req),
    )


def completion_request_from_native(req: n.CompletionRequest) -> CompletionRequest:
    schema, grammar = response_format_to_core(req.response_format)
    return CompletionRequest(
        prompt=_text(req.content, "content"),
        sampling=sampling_from_native(req.sampling_params, req.logprobs),
        json_schema=schema,
        grammar=grammar,
    )


def stop_reason(finish: FinishReason | None, end_of_message: bool) -> n.StopReason:
    if finish == "length":
        return n.StopReason.out_of_tokens
    if end_of_message or finish == "tool_calls":
        return n.StopReason.end_of_message
    return n.StopReason.end_of_turn


def logprobs_to_native(logprobs: list[TokenLogprob] | None) -> list[n.TokenLogProbs] | None:
    if logprobs is None:
        return None
    out = []
    for lp in logprobs:
        by_token = dict(lp.top)
        by_token.setdefault(lp.token, lp.logprob)
        out.append(n.TokenLogProbs(logprobs_by_token=by_token))
    return out


def usage_metrics(usage: Usage) -> list[n.MetricInResponse]:
    return [
        n.MetricInResponse(metric="prompt_tokens", value=usage.prompt_tokens),
        n.MetricInResponse(metric="completion_tokens", value=usage.completion_tokens),
        n.MetricInResponse(metric="total_tokens", value=usage.total_tokens),
    ]


def tool_call_to_native(call: ToolCallOut) -> n.ToolCall:
    import json

    try:
        arguments = json.loads(call.arguments)
    except json.JSONDecodeError:
        arguments = call.arguments
    return n.ToolCall(
        call_id=call.id, tool_name=call.name, arguments=arguments, arguments_json=call.arguments
    )


def chat_response(result: GenerationResult) -> n.ChatCompletionResponse:
    return n.ChatCompletionResponse(
        completion_message=n.CompletionMessage(
            content=result.text,
            stop_reason=stop_reason(result.finish_reason, result.end_of_message),
            tool_calls=[tool_call_to_native(c) for c in result.tool_calls],
        ),
        logprobs=logprobs_to_native(result.logprobs),
        metrics=usage_metrics(result.usage),
    )


def completion_response(result: GenerationResult) -> n.CompletionResponse:
    return n.CompletionResponse(
        content=result.text,
        stop_reason=stop_reason(result.finish_reason, result.end_of_message),
        logprobs=logprobs_to_native(result.logprobs),
        metrics=usage_metrics(result.usage),
    )


def chat_stream_start() -> n.ChatCompletionResponseStreamChunk:
    return n.ChatCompletionResponseStreamChunk(
        event=n.ChatCompletionResponseEvent(
            event_type=n.ChatCompletionResponseEventType.start, delta=n.TextDelta(text="")
        )
    )


def _progress(delta: n.TextDelta | n.ToolCallDelta) -> n.ChatCompletionResponseStreamChunk:
    return n.ChatCompletionResponseStreamChunk(
        event=n.ChatCompletionResponseEvent(
            event_type=n.ChatCompletionResponseEventType.progress, delta=delta
        )
    )


def _tool_call_deltas(chunk: GenerationChunk) -> list[n.ChatCompletionResponseStreamChunk]:
    status = n.ToolCallParseStatus
    out = [
        _progress(n.ToolCallDelta(tool_call="", parse_status=status.started)),
        _progress(n.ToolCallDelta(tool_call=chunk.tool_call_text, parse_status=status.in_progress)),
    ]
    if chunk.tool_call_failed:
        out.append(_progress(n.ToolCallDelta(tool_call=chunk.tool_call_text, parse_status=status.failed)))
    for call in chunk.tool_calls or []:
        out.append(
            _progress(n.ToolCallDelta(tool_call=tool_call_to_native(call), parse_status=status.succeeded))
        )
    return out


_TEXT_HEAD = b'{"metrics":null,"event":{"event_type":"progress","delta":{"type":"text","text":'
_TEXT_TAIL = b'},"logprobs":null,"stop_reason":null}}'


def chat_stream_text_json(chunk: GenerationChunk) -> bytes | None:
    """The JSON of ``chat_stream_chunks(chunk)`` when that is one piece of plain text (most of a
    stream), without building the models (byte for byte what they dump); None for other chunks."""
    if not chunk.text or chunk.tool_call_text or chunk.logprobs or chunk.finish_reason is not None:
        return None
    return _TEXT_HEAD + to_json(chunk.text) + _TEXT_TAIL


def chat_stream_chunks(chunk: GenerationChunk) -> list[n.ChatCompletionResponseStreamChunk]:
    out = _tool_call_deltas(chunk) if chunk.tool_call_text else []
    if chunk.text or chunk.logprobs:
        out.append(
            n.ChatCompletionResponseStreamChunk(
                event=n.ChatCompletionResponseEvent(
                    event_type=n.ChatCompletionResponseEventType.progress,
                    delta=n.TextDelta(text=chunk.text),
                    logprobs=logprobs_to_native(chunk.logprobs),
                )
            )
        )
    if chunk.finish_reason is not None:
        out.append(
            n.ChatCompletionResponseStreamChunk(
                event=n.ChatCompletionResponseEvent(
                    event_type=n.ChatCompletionResponseEventType.complete,
                    delta=n.TextDelta(text=""),
                    stop_reason=stop_reason(chunk.finish_reason, chunk.end_of_message),
                ),
                metrics=usage_metrics(chunk.usage) if chunk.usage else None,
            )
        )
    return out


def completion_stream_chunks(chunk: GenerationChunk) -> list[n.CompletionResponseStreamChunk]:
    if chunk.finish_reason is None:
        return [
            n.CompletionResponseStreamChunk(delta=chunk.text, logprobs=logprobs_to_native(chunk.logprobs))
        ]
    return [
        n.CompletionResponseStreamChunk(
            delta=chunk.text,
            logprobs=logprobs_to_native(chunk.logprobs),
            stop_reason=stop_reason(chunk.finish_reason, chunk.end_of_message),
            metrics=usage_metrics(chunk.usage) if chunk.usage else None,
        )
    ]
