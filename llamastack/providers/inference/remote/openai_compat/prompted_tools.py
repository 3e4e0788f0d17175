"""Tool calls on engines without OpenAI tool support (``tool_calls: prompt`` in the provider config).

The stack writes the tools into the prompt itself and reads the calls back out of the text, as the
inline llama.cpp provider does:

- a Llama 3.x model (by its id, engine name or ``llama_model`` metadata) gets Meta's prompt format,
  rendered whole and sent to the engine's raw completion route, so the engine's chat template (which
  may not know tools) is never involved;
- any other model gets the tools described in its system message, through the engine's chat route;
- a forced call (tool_choice "required" or a tool's name) asks the engine's own constrained
  decoding for the call's JSON schema where it has one (chat: response_format; raw completions:
  vLLM's guided_json), so the answer is a call;
- the answer text is parsed by the stack's tool-call parsers (the model family's format first).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llamastack.stack.apis.inference.core import ChatRequest, CompletionRequest, ToolOptions
from llamastack.stack.apis.models import Model

from ....utils.json_schema_grammar import tool_call_schema
from ....utils.tool_prompts import builtin_tools_for, generic_tool_messages, llama3_version, render_llama3

# What ends a Llama 3.x assistant turn: the end of the turn, or of a message awaiting a tool result.
_LLAMA3_STOPS = ("<|eot_id|>", "<|eom_id|>")
_BEGIN = "<|begin_of_text|>"  # engines add the BOS token to a prompt themselves


@dataclass(frozen=True, slots=True)
class PromptedCall:
    """How one chat request goes to the engine: exactly one of ``completion`` (Llama 3.x, raw route)
    and ``chat`` (other models, chat route without tools), and how to read the answer back."""

    tools: ToolOptions
    builtin: list[str]
    version: str | None
    completion: CompletionRequest | None = None
    chat: ChatRequest | None = None


def uses_tools(request: ChatRequest) -> bool:
    return (request.tools is not None and request.tools.active) or any(
        m.role == "tool" or m.tool_calls for m in request.messages
    )


def plan(model: Model, request: ChatRequest, *, raw_schema: bool) -> PromptedCall:
    """``raw_schema``: the engine constrains raw completions to a JSON schema."""
    tools = request.tools if request.tools is not None else ToolOptions(tools=[], choice="none")
    version = llama3_version(
        str(model.metadata.get("llama_model") or ""), model.identifier, model.provider_resource_id
    )
    builtin = builtin_tools_for(version, tools.tools) if tools.active else []
    forced = None
    if tools.forced and request.json_schema is None and request.grammar is None:
        forced = tool_call_schema(tools.tools, None if tools.choice == "required" else tools.choice)
    if version is not None:
        prompt = render_llama3(request.messages, tools, version).removeprefix(_BEGIN)
        sampling = replace(request.sampling, stop=[*request.sampling.stop, *_LLAMA3_STOPS])
        schema = request.json_schema or (forced if raw_schema else None)
        completion = CompletionRequest(prompt, sampling, json_schema=schema, grammar=request.grammar)
        return PromptedCall(tools, builtin, version, completion=completion)
    chat = replace(
        request,
        messages=generic_tool_messages(request.messages, tools),
        tools=None,
        json_schema=request.json_schema or forced,
    )
    return PromptedCall(tools, builtin, version, chat=chat)
