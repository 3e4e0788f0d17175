"""The core inference types <-> an OpenAI-compatible engine's request bodies and answers.

Requests are plain dicts (the body the engine gets); answers are the engine's JSON, read tolerating
what engines leave out (usage, finish reasons, tool call ids).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from llamastack.stack.apis.inference.core import (
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
    Usage,
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "stop",
    "eos": "stop",  # TGI's own word
    "eos_token": "stop",
}


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    content: str | list[dict[str, Any]] = m.content
    if m.images:
        content = [{"type": "image_url", "image_url": {"url": url}} for url in m.images]
        if m.content:
            content.append({"type": "text", "text": m.content})
    out: dict[str, Any] = {"role": m.role, "content": content}
    if m.role == "assistant" and m.tool_calls:
        out["tool_calls"] = [_call_param(c) for c in m.tool_calls]
        if not m.content:
            out["content"] = None
    return out


def _call_param(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", "{}")
    return {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": function.get("name", ""),
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def _sampling(s: SamplingOptions, extras: dict[str, str], *, chat: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("max_tokens", "temperature", "top_p", "frequency_penalty", "presence_penalty", "seed"):
        value = getattr(s, name)
        if value is not None:
            body[name] = value
    if s.stop:
        body["stop"] = list(s.stop)
    if s.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in s.logit_bias.items()}
    if s.logprobs is not None:
        if chat:
            body["logprobs"] = True
            if s.logprobs:
                body["top_logprobs"] = s.logprobs
        else:
            body["logprobs"] = s.logprobs
    # Knobs OpenAI lacks go where the engine takes them; an engine without them samples without.
    for ours, theirs in extras.items():
        value = getattr(s, ours)
        if value is not None:
            body[theirs] = value
    return body


def _tools(options: ToolOptions) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": t.parameters,
                },
            }
            for t in options.tools
        ]
    }
    if options.choice in ("auto", "none", "required"):
        body["tool_choice"] = options.choice
    else:
        body["tool_choice"] = {"type": "function", "function": {"name": options.choice}}
    if not options.parallel:
        body["parallel_tool_calls"] = False
    return body


def response_format(schema: dict[str, Any], schema_format: str = "json_schema") -> dict[str, Any]:
    if schema_format == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if schema == {"type": "object"}:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def chat_body(
    request: ChatRequest, extras: dict[str, str], schema_format: str = "json_schema"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [_message(m) for m in request.messages],
        **_sampling(request.sampling, extras, chat=True),
    }
    if request.json_schema is not None:
        body["response_format"] = response_format(request.json_schema, schema_format)
    if request.tools is not None and request.tools.tools:
        body.update(_tools(request.tools))
    return body


def completion_body(request: CompletionRequest, extras: dict[str, str]) -> dict[str, Any]:
    return {"prompt": request.prompt, **_sampling(request.sampling, extras, chat=False)}


# --- answers --------------------------------------------------------------------------------------
# The engine's JSON as parsed; a field it leaves out (or sends as null) reads as absent.


def _get(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


def finish_reason(value: str | None, has_calls: bool = False) -> FinishReason:
    if has_calls:
        return "tool_calls"
    return _FINISH.get(value or "stop", "stop")


def usage(value: Any, fallback_completion: int = 0) -> Usage:
    if not isinstance(value, dict):
        return Usage(prompt_tokens=0, completion_tokens=fallback_completion)
    return Usage(
        prompt_tokens=value.get("prompt_tokens") or 0,
        completion_tokens=value.get("completion_tokens") or 0,
    )


def chat_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    content = _get(logprobs, "content")
    if content is None:
        return None
    return [
        TokenLogprob(
            token=lp["token"],
            logprob=lp["logprob"],
            top=[(t["token"], t["logprob"]) for t in (lp.get("top_logprobs") or [])],
        )
        for lp in content
    ]


def completion_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    tokens = _get(logprobs, "tokens")
    if tokens is None:
        return None
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and tops[i] else {}
        value = values[i] if i < len(values) and values[i] is not None else 0.0
        out.append(TokenLogprob(token=token, logprob=value, top=list(top.items())))
    return out


def _call_out(call: dict[str, Any]) -> ToolCallOut:
    function = call.get("function") or {}
    return ToolCallOut(
        id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        name=function.get("name") or "",
        arguments=function.get("arguments") or "{}",
    )


def chat_result(completion: dict[str, Any]) -> GenerationResult:
    choice = completion["choices"][0]
    message = choice["message"]
    calls = [_call_out(c) for c in (message.get("tool_calls") or [])]
    return GenerationResult(
        text=message.get("content") or "",
        finish_reason=finish_reason(choice.get("finish_reason"), bool(calls)),
        usage=usage(completion.get("usage")),
        logprobs=chat_logprobs(choice.get("logprobs")),
        tool_calls=calls,
    )


def completion_result(completion: dict[str, Any]) -> GenerationResult:
    choice = completion["choices"][0]
    return GenerationResult(
        text=choice.get("text") or "",
        finish_reason=finish_reason(choice.get("finish_reason")),
        usage=usage(completion.get("usage")),
        logprobs=completion_logprobs(choice.get("logprobs")),
    )


def calls_text(calls: list[ToolCallOut]) -> str:
    """The calls as text, for streams that report the raw tool-call text (native routes)."""
    return json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StreamAssembler:
    """Turns an engine's stream chunks into ours: text as it comes, tool-call deltas (by index)
    assembled into whole calls, and one final chunk with the finish reason and usage, sent when the
    stream ends (the usage chunk comes after the finish reason)."""

    chat: bool = True
    _calls: dict[int, _PartialCall] = field(default_factory=dict)
    _finish: str | None = None
    _usage: Any = None
    _pieces: int = 0

    def feed(self, chunk: dict[str, Any]) -> GenerationChunk | None:
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
        if self.chat:
            delta = choice.get("delta") or {}
            for call in delta.get("tool_calls") or []:
                partial = self._calls.setdefault(call.get("index") or 0, _PartialCall())
                partial.id = partial.id or (call.get("id") or "")
                function = call.get("function")
                if function:
                    partial.name = partial.name or (function.get("name") or "")
                    if function.get("arguments"):
                        partial.arguments.append(function["arguments"])
            text = delta.get("content") or ""
            logprobs = chat_logprobs(choice.get("logprobs"))
        else:
            text = choice.get("text") or ""
            logprobs = completion_logprobs(choice.get("logprobs"))
        if not text and not logprobs:
            return None
        self._pieces += 1
        return GenerationChunk(text=text, logprobs=logprobs)

    def final(self) -> GenerationChunk:
        calls = [
            ToolCallOut(
                id=p.id or f"call_{uuid.uuid4().hex[:24]}",
                name=p.name,
                arguments="".join(p.arguments) or "{}",
            )
            for _, p in sorted(self._calls.items())
        ]
        return GenerationChunk(
            finish_reason=finish_reason(self._finish, bool(calls)),
            usage=usage(self._usage, self._pieces),
            tool_calls=calls or None,
            tool_call_text=calls_text(calls) if calls else "",
        )
