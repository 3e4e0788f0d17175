"""Turning a model's text into structured tool calls, for whole results and for streams.

Inline engines only produce text; these helpers give every inline provider the same tool-call
behaviour. A stream is held back only while its beginning could still be a call, so ordinary
answers stream token by token. The parser chain comes from `tool_parsers.select_parser`: the
request's tool_prompt_format (else the model family's default) first, every other format after.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace

from llamastack.stack.apis.inference.core import (
    GenerationChunk,
    GenerationResult,
    TokenLogprob,
    ToolCallOut,
    ToolOptions,
)

from .tool_parsers import ParsedToolCall, ToolNames, ToolParser, select_parser


def _calls_out(parsed: list[ParsedToolCall], tools: ToolOptions) -> list[ToolCallOut]:
    calls = [
        ToolCallOut(id=f"call_{uuid.uuid4().hex[:24]}", name=c.name, arguments=json.dumps(c.arguments))
        for c in parsed
    ]
    return calls if tools.parallel else calls[:1]


def _reading(
    tools: ToolOptions, builtin: list[str], llama_version: str | None
) -> tuple[ToolParser, ToolNames]:
    names = ToolNames.of([t.name for t in tools.tools], builtin)
    return select_parser(tools.prompt_format, llama_version), names


def apply_to_result(
    result: GenerationResult, tools: ToolOptions, builtin: list[str], *, llama_version: str | None = None
) -> GenerationResult:
    parser, names = _reading(tools, builtin, llama_version)
    parsed = parser.parse(result.text, names)
    if not parsed.tool_calls:
        return result
    return replace(
        result,
        text=parsed.content,
        tool_calls=_calls_out(parsed.tool_calls, tools),
        finish_reason="tool_calls",
    )


async def apply_to_stream(
    source: AsyncIterator[GenerationChunk],
    tools: ToolOptions,
    builtin: list[str],
    *,
    llama_version: str | None = None,
) -> AsyncGenerator[GenerationChunk, None]:
    parser, names = _reading(tools, builtin, llama_version)
    held = ""  # text held back while it could still be the start of a call
    held_logprobs: list[TokenLogprob] = []
    streamed: list[str] = []  # text already sent, parsed at the end for calls after prose
    deciding = True
    try:
        async for chunk in source:
            if deciding and chunk.text:
                held += chunk.text
                held_logprobs += chunk.logprobs or []
                if not parser.may_be_call(held, names):
                    deciding = False
                    streamed.append(held)
                    yield GenerationChunk(text=held, logprobs=held_logprobs or None)
                    held, held_logprobs = "", []
                chunk = replace(chunk, text="", logprobs=None)
            elif chunk.text:
                streamed.append(chunk.text)
            if chunk.finish_reason is None:
                if chunk.text or chunk.logprobs:
                    yield chunk
                continue
            whole = held if deciding else "".join(streamed)
            parsed = parser.parse(whole, names) if whole.strip() else None
            if parsed is not None and parsed.tool_calls:
                calls = _calls_out(parsed.tool_calls, tools)
                text = parsed.content if deciding else ""
                yield GenerationChunk(
                    text=text, logprobs=held_logprobs or None, tool_call_text=whole, tool_calls=calls
                )
                chunk = replace(chunk, finish_reason="tool_calls")
            elif deciding and held:
                yield GenerationChunk(
                    text=held, logprobs=held_logprobs or None, tool_call_text=held, tool_call_failed=True
                )
            yield chunk
    finally:
        closer = getattr(source, "aclose", None)
        if closer is not None:
            await closer()
