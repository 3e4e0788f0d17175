"""Turning a model's text into structured tool calls, for whole results and for streams.

Inline engines only produce text; these helpers give every inline provider the same tool-call
behaviour. A stream is held back only while its beginning could still be a call, so ordinary
answers stream token by token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

from llamastack.stack.apis.inference.core import (
    GenerationChunk,
    GenerationResult,
    TokenLogprob,
    ToolCallOut,
    ToolOptions,
)

from .tool_parsing import ParsedToolCall, could_be_tool_call, parse_tool_calls


def _calls_out(parsed: list[ParsedToolCall], tools: ToolOptions) -> list[ToolCallOut]:
    calls = [
        ToolCallOut(id=f"call_{uuid.uuid4().hex[:24]}", name=c.name, arguments=json.dumps(c.arguments))
        for c in parsed
    ]
    return calls if tools.parallel else calls[:1]


def apply_to_result(result: GenerationResult, tools: ToolOptions, builtin: list[str]) -> GenerationResult:
    parsed = parse_tool_calls(result.text, [t.name for t in tools.tools], builtin_tools=builtin)
    if not parsed.tool_calls:
        return result
    return replace(
        result,
        text=parsed.content,
        tool_calls=_calls_out(parsed.tool_calls, tools),
        finish_reason="tool_calls",
    )


async def apply_to_stream(
    source: AsyncIterator[GenerationChunk], tools: ToolOptions, builtin: list[str]
) -> AsyncIterator[GenerationChunk]:
    names = [t.name for t in tools.tools]
    held = ""  # text held back while it could still be the start of a call
    held_logprobs: list[TokenLogprob] = []
    streamed: list[str] = []  # text already sent, parsed at the end for calls after prose
    deciding = True
    try:
        async for chunk in source:
            if deciding and chunk.text:
                held += chunk.text
                held_logprobs += chunk.logprobs or []
                if not could_be_tool_call(held, names, builtin_tools=builtin):
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
            parsed = parse_tool_calls(whole, names, builtin_tools=builtin) if whole.strip() else None
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
