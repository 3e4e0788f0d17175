"""OpenAI Responses requests and items <-> the internal core (ChatRequest, GenerationResult)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ..apis import responses as r
from ..apis.inference.core import ChatMessage, SamplingOptions, ToolCallOut, ToolSpec
from ..errors import BadRequestError, UnsupportedError

_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "file_search_call": "fs",
    "web_search_call": "ws",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def with_ids(items: list[r.ResponseInputItem]) -> list[r.ResponseInputItem]:
    """The items, each with an id (input_items pages by id)."""
    return [item if item.id else item.model_copy(update={"id": new_id(_PREFIX[item.type])}) for item in items]


def input_items(value: str | list[r.ResponseInputItem]) -> list[r.ResponseInputItem]:
    if isinstance(value, str):
        parts: list[r.InputContentPart] = [r.ResponseInputText(text=value)]
        return with_ids([r.ResponseMessage(role="user", content=parts)])
    if not value:
        raise BadRequestError("input: give a string or at least one input item.")
    return with_ids(list(value))


def _message_content(message: r.ResponseMessage, where: str) -> tuple[str, list[str] | None]:
    """A message's text and, for a user message, its input_image URLs (http(s) or data URLs)."""
    if isinstance(message.content, str):
        return message.content, None
    parts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(message.content):
        if isinstance(part, r.ResponseInputImage):
            if message.role != "user":
                raise UnsupportedError(f"{where} contains an input_image part; images go in user messages.")
            if not part.image_url:
                raise BadRequestError(
                    f"{where}.content[{j}]: input_image needs image_url (an http(s) or data URL); "
                    "file_id images are not supported."
                )
            images.append(part.image_url)
        else:
            parts.append(part.text)
    return "".join(parts), images or None


def chat_messages(items: list[r.ResponseInputItem], instructions: str | None) -> list[ChatMessage]:
    messages = [ChatMessage("system", instructions)] if instructions else []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if isinstance(item, r.ResponseMessage):
            role = "system" if item.role == "developer" else item.role
            text, images = _message_content(item, where)
            messages.append(ChatMessage(role, text, images=images))
        elif isinstance(item, r.ResponseFunctionToolCall):
            add_tool_call(messages, item.call_id, item.name, item.arguments)
        elif isinstance(item, r.ResponseFunctionToolCallOutput):
            messages.append(ChatMessage("tool", item.output, tool_call_id=item.call_id))
        elif isinstance(item, r.ResponseFileSearchCall):
            # The server ran it: the model sees the call and what it found (if kept: include asks).
            query = item.queries[0] if item.queries else ""
            add_tool_call(messages, item.id, "file_search", json.dumps({"query": query}))
            found = "\n".join(
                f"[{n}] {x.filename or x.file_id}: {x.text}" for n, x in enumerate(item.results or [], 1)
            )
            kept = found or "(the results were not kept)"
            messages.append(ChatMessage("tool", kept, tool_call_id=item.id))
        elif isinstance(item, r.ResponseMCPCall):
            add_tool_call(messages, item.id, item.name, item.arguments)
            output = item.output if item.error is None else f"Error: {item.error}"
            messages.append(ChatMessage("tool", output or "", tool_call_id=item.id))
        # mcp_list_tools, web_search_call and approval items carry nothing the model reads.
    return messages


def add_tool_call(messages: list[ChatMessage], call_id: str, name: str, arguments: str) -> None:
    """Adds a call to the last assistant message when it is one of only calls (parallel calls of one
    turn are one assistant message), else as a new assistant message."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant" and last.tool_calls and not last.content:
        last.tool_calls.append(call)
    else:
        messages.append(ChatMessage("assistant", "", tool_calls=[call]))


def json_schema(text: r.ResponseText | None) -> dict[str, Any] | None:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    if not fmt.name:
        raise BadRequestError("text.format.name is required when text.format.type is json_schema.")
    if not fmt.schema_:
        raise BadRequestError("text.format.schema is required when text.format.type is json_schema.")
    return fmt.schema_


def tool_spec(tool: dict[str, Any], where: str) -> ToolSpec:
    """A function tool ({type: function, name, description, parameters}) as the core offers it."""
    name = tool.get("name")
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise BadRequestError(
            f"{where}.name must be a function name of letters, digits, underscores and dashes "
            "(at most 64 characters)."
        )
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise BadRequestError(f"{where}.parameters must be a JSON schema object.")
    description = tool.get("description")
    return ToolSpec(
        name=name, description=description if isinstance(description, str) else None, parameters=parameters
    )


def sampling(request: r.CreateOpenaiResponseRequest) -> SamplingOptions:
    return SamplingOptions(
        max_tokens=request.max_output_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=request.top_p,
    )


def message_item(text: str, *, item_id: str, status: str) -> r.ResponseMessage:
    return r.ResponseMessage(
        role="assistant", content=[r.ResponseOutputText(text=text)], id=item_id, status=status
    )


def function_call_item(call: ToolCallOut) -> r.ResponseFunctionToolCall:
    return r.ResponseFunctionToolCall(
        call_id=call.id, name=call.name, arguments=call.arguments, id=new_id("fc"), status="completed"
    )
