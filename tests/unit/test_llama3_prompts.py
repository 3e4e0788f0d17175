"""Our Llama 3.x tool prompts, rendered through the real request path, against Meta's own examples.

The expected texts are read from the prompt-format docs shipped in ``llama-models``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import date
from pathlib import Path

import pytest

from llamastack.providers.utils.tool_prompts import llama3_version, render_llama3
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.inference import openai as o
from llamastack.stack.translate.native import chat_request_from_native
from llamastack.stack.translate.openai import chat_request_from_openai

DOCS = Path(importlib.util.find_spec("llama_models").submodule_search_locations[0])
SEPT_21 = date(2024, 9, 21)


def doc_prompt(doc: str, section: str) -> str:
    """The 'Input Prompt Format' block of a section of a prompt-format doc."""
    text = (DOCS / doc).read_text()
    start = text.index(f"\n## {section}\n")
    block = re.search(r"##### Input Prompt Format\n```\n(.*?)```", text[start:], re.DOTALL)
    assert block is not None
    return block.group(1).removesuffix("\n")  # the newline before the closing fence


GET_WEATHER = {
    "tool_name": "get_weather",
    "description": "Get weather info for places",
    "parameters": {
        "city": {
            "param_type": "string",
            "description": "The name of the city to get the weather for",
            "required": True,
        },
        "metric": {
            "param_type": "string",
            "description": "The metric for weather. Options are: celsius, fahrenheit",
            "required": False,
            "default": "celsius",
        },
    },
}


def native(messages: list[dict], tools: list[dict], **extra) -> tuple:
    request = chat_request_from_native(
        n.ChatCompletionRequest.model_validate(
            {"model_id": "m", "messages": messages, "tools": tools, **extra}
        )
    )
    return request.messages, request.tools


def test_llama32_zero_shot_python_list() -> None:
    messages, tools = native(
        [{"role": "user", "content": "What is the weather in SF and Seattle?"}], [GET_WEATHER]
    )
    expected = doc_prompt("llama3_2/text_prompt_format.md", "Zero shot function calling")
    assert render_llama3(messages, tools, "3.2") == expected


def test_llama32_end_to_end_with_tool_result() -> None:
    messages, tools = native(
        [
            {"role": "user", "content": "What is the weather in SF?"},
            {
                "role": "assistant",
                "content": "",
                "stop_reason": "end_of_turn",
                "tool_calls": [
                    {
                        "call_id": "c1",
                        "tool_name": "get_weather",
                        "arguments": {"city": "San Francisco", "metric": "celsius"},
                    }
                ],
            },
            {"role": "tool", "call_id": "c1", "content": '"25 C"'},
        ],
        [GET_WEATHER],
    )
    expected = doc_prompt("llama3_2/text_prompt_format.md", "Zero shot function calling E2E format")
    assert render_llama3(messages, tools, "3.2") == expected


def test_llama31_builtin_tools() -> None:
    messages, tools = native(
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Search the web for the latest price of 1oz gold?"},
        ],
        [{"tool_name": "brave_search"}, {"tool_name": "wolfram_alpha"}],
    )
    expected = doc_prompt("llama3_1/prompt_format.md", "Builtin Tool Calling")
    assert render_llama3(messages, tools, "3.1", today=SEPT_21) == expected


def test_llama31_json_tool_calling_through_openai_request() -> None:
    trending = {
        "type": "object",
        "properties": [
            {"n": {"type": "object", "description": "The number of songs to return"}},
            {"genre": {"type": "object", "description": "The genre of the songs to return"}},
        ],
        "required": ["n"],
    }
    request = chat_request_from_openai(
        o.OpenaiChatCompletionRequest.model_validate(
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Use tools to get latest trending songs"},
                ],
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "trending_songs",
                            "description": "Returns the trending songs on a Music site",
                            "parameters": trending,
                        },
                    }
                ],
            }
        )
    )
    expected = doc_prompt("llama3_1/prompt_format.md", "JSON based tool calling")
    assert render_llama3(request.messages, request.tools, "3.1", today=SEPT_21) == expected


def test_llama31_function_tag() -> None:
    messages, tools = native(
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Use tools to get latest trending songs"},
        ],
        [
            {
                "tool_name": "trending_songs",
                "description": "Returns the trending songs on a Music site",
                "parameters": {
                    "n": {
                        "param_type": "int",
                        "description": "The number of songs to return",
                        "required": True,
                    },
                    "genre": {
                        "param_type": "str",
                        "description": "The genre of the songs to return",
                        "required": False,
                    },
                },
            }
        ],
        tool_config={"tool_prompt_format": "function_tag"},
    )
    expected = doc_prompt("llama3_1/prompt_format.md", "`<function>` based tool calling")
    assert render_llama3(messages, tools, "3.1", today=SEPT_21) == expected


def test_replace_system_message_with_function_definitions_placeholder() -> None:
    messages, tools = native(
        [
            {"role": "system", "content": "Tools you have:\n{{function_definitions}}\nUse them wisely."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        [GET_WEATHER],
        tool_config={"system_message_behavior": "replace"},
    )
    prompt = render_llama3(messages, tools, "3.2")
    system = prompt.split("<|eot_id|>")[0]
    assert system.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nTools you have:\n["
    )
    assert '"name": "get_weather"' in system
    assert system.endswith("Use them wisely.")
    assert "You are an expert in composing functions" not in system


def test_tool_choice_none_renders_no_tools() -> None:
    messages, tools = native(
        [{"role": "user", "content": "hi"}], [GET_WEATHER], tool_config={"tool_choice": "none"}
    )
    assert render_llama3(messages, tools, "3.2") == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama32_has_no_builtin_tools() -> None:
    """3.2 1B/3B are zero-shot only: a 'builtin' tool is described like any other function."""
    messages, tools = native(
        [{"role": "user", "content": "Search for llamas"}],
        [
            {
                "tool_name": "brave_search",
                "description": "Web search",
                "parameters": {"query": {"param_type": "string", "required": True}},
            }
        ],
    )
    prompt = render_llama3(messages, tools, "3.2")
    assert "Tools: brave_search" not in prompt
    functions = json.loads(prompt.split("you can invoke.\n\n")[1].split("<|eot_id|>")[0])
    assert functions[0]["name"] == "brave_search"


@pytest.mark.parametrize(
    ("names", "version"),
    [
        (("Llama3.2-3B-Instruct",), "3.2"),
        (("meta-llama/Llama-3.1-8B-Instruct",), "3.1"),
        ((None, "Llama-3.3-70B-Instruct-Q4_K_M.gguf"), "3.3"),
        (("llama_3_2_1b",), "3.2"),
        (("Llama-Guard-3-1B",), None),
        (("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"), None),
        (("Llama-3.21-fake",), None),
    ],
)
def test_family_detection(names: tuple, version: str | None) -> None:
    assert llama3_version(*names) == version
