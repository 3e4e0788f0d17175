"""How tools are put in front of a model, and how past tool calls are written back into a prompt.

Llama 3.1/3.2/3.3 get Meta's own format (see the prompt-format docs shipped in ``llama-models``;
tests/unit/test_llama3_prompts.py compares our rendering with their examples). Other models get
a plain instruction in the system message and their own chat template.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from llamastack.stack.apis.inference.core import ChatMessage, ToolOptions, ToolPromptFormat, ToolSpec
from llamastack.stack.library_imports import import_libraries

BUILTIN_TOOLS = ("brave_search", "wolfram_alpha", "photogen", "code_interpreter")
_FAMILY = re.compile(r"llama[-_ ]?3[._-]?(?P<minor>[123])(?![0-9])", re.IGNORECASE)
_FUNCTION_DEFINITIONS = "{{function_definitions}}"


def llama3_version(*names: str | None) -> str | None:
    """'3.1', '3.2' or '3.3' when any of the names (model id, file, GGUF name) is a Llama 3.x model."""
    for name in names:
        if name and "guard" not in name.lower() and (match := _FAMILY.search(name)):
            return f"3.{match.group('minor')}"
    return None


def default_prompt_format(version: str | None) -> ToolPromptFormat:
    return "json" if version == "3.1" else "python_list"


def builtin_tools_for(version: str | None, tools: list[ToolSpec]) -> list[str]:
    """Llama 3.1 has builtin tools; 3.2 and 3.3 call every tool zero-shot."""
    if version != "3.1":
        return []
    return [t.name for t in tools if t.name in BUILTIN_TOOLS]


# --- Llama 3.x ------------------------------------------------------------------------------------

_PYTHON_LIST_PROMPT = """You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you will need to make one or more function/tool calls to achieve the purpose.
If none of the function can be used, point it out. If the given question lacks the parameters required by the function,
also point it out. You should only return the function call in tools call sections.

If you decide to invoke any of the function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]
You SHOULD NOT include any other text in the response.

Here is a list of functions in JSON format that you can invoke.

{functions}"""  # noqa: E501

_JSON_PROMPT = """Answer the user's question by making use of the following functions if needed.
If none of the function can be used, please say so.
Here is a list of functions in JSON format:
{functions}

Return function calls in JSON format."""

_FUNCTION_TAG_PROMPT = """You have access to the following functions:

{functions}

Think very carefully before calling functions.
If you choose to call a function ONLY reply in the following format with no prefix or suffix:

<function=example_function_name>{{"example_name": "example_value"}}</function>

Reminder:
- If looking for real time information use relevant functions before falling back to brave_search
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Put the entire function call reply on one line"""


def _param_type(schema: dict[str, Any]) -> str:
    kind = schema.get("x-param-type") or schema.get("type") or "string"
    return kind if isinstance(kind, str) else "|".join(kind)


def _python_list_function(tool: ToolSpec) -> dict[str, Any]:
    properties = {}
    for name, schema in tool.parameters.get("properties", {}).items():
        prop: dict[str, Any] = {"type": _param_type(schema)}
        if schema.get("description"):
            prop["description"] = schema["description"]
        if "default" in schema:
            prop["default"] = schema["default"]
        properties[name] = prop
    return {
        "name": tool.name,
        "description": tool.description or "",
        "parameters": {
            "type": "dict",
            "required": list(tool.parameters.get("required", [])),
            "properties": properties,
        },
    }


def _function_tag_function(tool: ToolSpec) -> str:
    required = set(tool.parameters.get("required", []))
    params = {
        name: {
            "description": schema.get("description", ""),
            "param_type": _param_type(schema),
            "required": name in required,
        }
        for name, schema in tool.parameters.get("properties", {}).items()
    }
    # Parameters in name order, each with its keys in name order, as Meta's example shows.
    sorted_params = json.loads(json.dumps(params, sort_keys=True))
    body = json.dumps({"name": tool.name, "description": tool.description or "", "parameters": sorted_params})
    return f"Use the function '{tool.name}' to '{tool.description or ''}':\n{body}"


def _dumps(value: Any, indent: str = "") -> str:
    """JSON with 4-space indentation but lists of plain values on one line, as Meta's 3.1 examples."""
    inner = indent + "    "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value)


def _json_function(tool: ToolSpec) -> str:
    function = {"name": tool.name, "description": tool.description or "", "parameters": tool.parameters}
    return _dumps({"type": "function", "function": function})


def function_definitions(tools: list[ToolSpec], fmt: ToolPromptFormat) -> str:
    if fmt == "python_list":
        return json.dumps([_python_list_function(t) for t in tools], indent=4)
    if fmt == "function_tag":
        return "\n\n".join(_function_tag_function(t) for t in tools)
    return "\n\n".join(_json_function(t) for t in tools)


_PROMPTS = {"python_list": _PYTHON_LIST_PROMPT, "function_tag": _FUNCTION_TAG_PROMPT, "json": _JSON_PROMPT}


def custom_tools_prompt(tools: list[ToolSpec], fmt: ToolPromptFormat) -> str:
    return _PROMPTS[fmt].format(functions=function_definitions(tools, fmt))


def _ipython_system(builtin: list[str], today: date, user_system: str) -> str:
    named = [t for t in builtin if t != "code_interpreter"]
    text = "Environment: ipython\n" + (f"Tools: {', '.join(named)}\n" if named else "\n")
    text += f"Cutting Knowledge Date: December 2023\nToday Date: {today.day} {today:%B %Y}\n"
    if user_system:
        text += f"\n{user_system}\n"
    return text


def _merge_system(user_system: str, prompt: str, definitions: str, behavior: str) -> str:
    """append: our tool prompt, then the user's system message. replace: the user's system message,
    with ``{{function_definitions}}`` (if present) standing for the function list."""
    if behavior == "replace" and user_system:
        return user_system.replace(_FUNCTION_DEFINITIONS, definitions)
    return f"{prompt}\n\n{user_system}" if user_system else prompt


def _encode_calls(calls: list[dict[str, Any]], fmt: ToolPromptFormat, builtin: list[str]) -> tuple[str, bool]:
    """An assistant message's tool calls as the model writes them, and whether it ends with <|eom_id|>."""
    # Also called on the event loop (remote engines): the lock is taken only for the first import.
    import_libraries("llama_models.datatypes", "llama_models.llama3.tool_utils")
    from llama_models.datatypes import BuiltinTool, ToolCall
    from llama_models.datatypes import ToolPromptFormat as MetaFormat
    from llama_models.llama3.tool_utils import ToolUtils

    meta_format = MetaFormat(fmt)

    parsed = []
    for call in calls:
        function = call.get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            arguments = {}
        name = function.get("name", "")
        tool_name = BuiltinTool(name) if name in builtin else name
        parsed.append(ToolCall(call_id=call.get("id") or "", tool_name=tool_name, arguments=arguments))
    if parsed and parsed[0].tool_name in builtin:
        return "<|python_tag|>" + ToolUtils.encode_tool_call(parsed[0], meta_format), True
    if fmt == "python_list":
        inner = [ToolUtils.encode_tool_call(c, meta_format)[1:-1] for c in parsed]
        return "<|python_tag|>[" + ", ".join(inner) + "]", False
    encoded = "\n".join(ToolUtils.encode_tool_call(c, meta_format) for c in parsed)
    if fmt == "json":
        return "<|python_tag|>" + encoded, True
    return encoded, False


def _turn(role: str, content: str, end: str = "<|eot_id|>") -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}{end}"


def render_llama3(
    messages: list[ChatMessage], tools: ToolOptions | None, version: str | None, *, today: date | None = None
) -> str:
    """The whole prompt, special tokens as text, ending with the assistant header."""
    today = today or date.today()
    active = tools is not None and tools.active
    fmt: ToolPromptFormat = (tools.prompt_format if tools else None) or default_prompt_format(version)
    all_tools = tools.tools if tools and active else []
    builtin = builtin_tools_for(version, all_tools)
    custom = [t for t in all_tools if t.name not in builtin]
    user_system = "\n".join(m.content for m in messages if m.role == "system")
    behavior = tools.system_message_behavior if tools else "append"

    out = ["<|begin_of_text|>"]
    tool_instructions = None
    if custom and fmt == "python_list" and not builtin:
        prompt, definitions = custom_tools_prompt(custom, fmt), function_definitions(custom, fmt)
        out.append(_turn("system", _merge_system(user_system, prompt, definitions, behavior)))
    elif all_tools:
        out.append(_turn("system", _ipython_system(builtin, today, user_system)))
        if custom:
            tool_instructions = custom_tools_prompt(custom, "json" if fmt == "python_list" else fmt)
    elif user_system:
        out.append(_turn("system", user_system))
    if tool_instructions:
        out.append(_turn("user", tool_instructions))

    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            out.append(_turn("ipython", m.content))
        elif m.role == "assistant" and m.tool_calls:
            encoded, eom = _encode_calls(m.tool_calls, fmt, builtin)
            out.append(_turn("assistant", m.content + encoded, "<|eom_id|>" if eom else "<|eot_id|>"))
        else:
            out.append(_turn(m.role, m.content))
    out.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(out)


# --- other models -------------------------------------------------------------------------------

_GENERIC_PROMPT = """You can call the following functions. To call one, reply with only a JSON object of the form {{"name": "<function name>", "parameters": {{<argument>: <value>, ...}}}} and nothing else. If no function is needed, answer normally.

Functions:
{functions}"""  # noqa: E501


def generic_tool_messages(messages: list[ChatMessage], tools: ToolOptions | None) -> list[ChatMessage]:
    """Messages for a model with its own chat template: tools described in the system message and
    past calls written back as the JSON the model was asked to produce."""
    out: list[ChatMessage] = []
    if tools is not None and tools.active:
        functions = json.dumps(
            [
                {"name": t.name, "description": t.description or "", "parameters": t.parameters}
                for t in tools.tools
            ],
            indent=2,
        )
        user_system = "\n".join(m.content for m in messages if m.role == "system")
        prompt = _GENERIC_PROMPT.format(functions=functions)
        text = _merge_system(user_system, prompt, functions, tools.system_message_behavior)
        out.append(ChatMessage("system", text))
        messages = [m for m in messages if m.role != "system"]
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for call in m.tool_calls:
                function = call.get("function") or {}
                raw = function.get("arguments") or "{}"
                try:
                    arguments = json.loads(raw) if isinstance(raw, str) else raw
                except json.JSONDecodeError:
                    arguments = raw
                calls.append(json.dumps({"name": function.get("name", ""), "parameters": arguments}))
            text = "\n".join(filter(None, [m.content, *calls]))
            out.append(ChatMessage("assistant", text))
        else:
            out.append(ChatMessage(m.role, m.content, tool_call_id=m.tool_call_id, images=m.images))
    return out
