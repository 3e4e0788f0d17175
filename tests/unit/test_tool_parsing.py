from __future__ import annotations

import random
from typing import Any

import pytest

from llamastack.providers.utils.tool_parsing import (
    ParsedToolCall,
    ParseResult,
    could_be_tool_call,
    parse_tool_calls,
)

TOOLS = ("get_weather", "get_user_info", "trending_songs")
BUILTINS = ("brave_search", "wolfram_alpha", "code_interpreter")

# Verbatim model responses from the llama-models prompt-format docs (llama3_2/text_prompt_format.md,
# llama3_1/prompt_format.md).
LLAMA32_TWO_CALLS = (
    "[get_weather(city='San Francisco', metric='celsius'), "
    "get_weather(city='Seattle', metric='celsius')]<|eot_id|>"
)
LLAMA32_USER_INFO = "[get_user_info(user_id=7890, special='black')]<|eot_id|>"
LLAMA32_TAGGED_LIST = '<|python_tag|>[get_weather(city="San Francisco", metric="celsius")]<|eot_id|>'
LLAMA31_JSON = """<|python_tag|>{
    "type": "function",
    "name": "trending_songs",
    "parameters": {
        "n": "10",
        "genre": "all"
    }
}<|eom_id|>"""
LLAMA31_FUNCTION_TAG = '<function=trending_songs>{"n": 10}</function><|eot_id|>'
LLAMA31_BRAVE = '<|python_tag|>brave_search.call(query="latest price of 1oz gold")<|eom_id|>'
LLAMA31_WOLFRAM = '<|python_tag|>wolfram_alpha.call(query="100th decimal of pi")<|eom_id|>'
LLAMA32_CODE = """def is_prime(n):
    if n <= 1:
        return False
    if n == 2:
        return True
    if n % 2 == 0:
        return False
    max_divisor = int(n**0.5) + 1
    for d in range(3, max_divisor, 2):
        if n % d == 0:
            return False
    return True

print(is_prime(7))  # Output: True"""
# The 3.1 doc's sample really is missing a colon: code is passed through, not validated.
LLAMA31_CODE = """def is_prime(n):
    if n <= 1
        return False
    for i in range(2, int(n**0.5) + 1):
        if n % i == 0:
            return False
    return True

print(is_prime(7))  # Output: True"""

PARIS = {"city": "Paris"}


def call(name: str, **arguments: Any) -> ParsedToolCall:
    return ParsedToolCall(name, arguments)


CALLS: list[tuple[str, str, list[ParsedToolCall]]] = [
    # (output, expected content, expected calls) -- all with TOOLS and BUILTINS available
    (
        LLAMA32_TWO_CALLS,
        "",
        [
            call("get_weather", city="San Francisco", metric="celsius"),
            call("get_weather", city="Seattle", metric="celsius"),
        ],
    ),
    (LLAMA32_USER_INFO, "", [call("get_user_info", user_id=7890, special="black")]),
    (LLAMA32_TAGGED_LIST, "", [call("get_weather", city="San Francisco", metric="celsius")]),
    (LLAMA31_JSON, "", [call("trending_songs", n="10", genre="all")]),
    (LLAMA31_FUNCTION_TAG, "", [call("trending_songs", n=10)]),
    (LLAMA31_BRAVE, "", [call("brave_search", query="latest price of 1oz gold")]),
    (LLAMA31_WOLFRAM, "", [call("wolfram_alpha", query="100th decimal of pi")]),
    (f"<|python_tag|>{LLAMA32_CODE}<|eom_id|>", "", [call("code_interpreter", code=LLAMA32_CODE)]),
    (f"<|python_tag|>{LLAMA31_CODE}<|eom_id|>", "", [call("code_interpreter", code=LLAMA31_CODE)]),
    (
        "Let me work it out.<|python_tag|>```python\nprint(2 ** 10)\n```<|eom_id|>",
        "Let me work it out.",
        [call("code_interpreter", code="print(2 ** 10)")],
    ),
    # pythonic: every literal type, single call without brackets
    (
        '[get_weather(x=1, y=[1, 2], z={"a": 1}, flag=True, none=None, t=(1, 2), f=-1.5)]',
        "",
        [call("get_weather", x=1, y=[1, 2], z={"a": 1}, flag=True, none=None, t=[1, 2], f=-1.5)],
    ),
    ('get_weather(city="Paris")', "", [call("get_weather", **PARIS)]),
    ("[get_user_info()]", "", [call("get_user_info")]),
    ('[get_weather(city="Paris [FR] {x}")]', "", [call("get_weather", city="Paris [FR] {x}")]),
    ("[get_weather(city='Val d\\'Isère')]", "", [call("get_weather", city="Val d'Isère")]),
    # JSON variants
    ('{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [call("get_weather", **PARIS)]),
    (
        '{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}',
        "",
        [call("get_weather", **PARIS)],
    ),
    ('{"name": "get_weather", "arguments": {"city": "Paris"}}', "", [call("get_weather", **PARIS)]),
    ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}', "", [call("get_weather", **PARIS)]),
    (
        '{"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}',
        "",
        [call("get_weather", **PARIS)],
    ),
    (
        '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
        "",
        [call("get_weather", **PARIS)],
    ),
    ('{"name": "get_user_info", "parameters": {}}', "", [call("get_user_info")]),
    ("{'name': 'get_weather', 'parameters': {'city': 'Paris'}}", "", [call("get_weather", **PARIS)]),
    (
        '[{"name": "get_weather", "parameters": {"city": "Paris"}}, '
        '{"name": "get_user_info", "parameters": {"user_id": 1}}]',
        "",
        [call("get_weather", **PARIS), call("get_user_info", user_id=1)],
    ),
    (
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_weather", "parameters": {"city": "Rome"}}',
        "",
        [call("get_weather", **PARIS), call("get_weather", city="Rome")],
    ),
    (
        '{"name": "get_weather", "parameters": {"city": "Paris"}}\n'
        '{"name": "get_weather", "parameters": {"city": "Rome"}}',
        "",
        [call("get_weather", **PARIS), call("get_weather", city="Rome")],
    ),
    (
        '{"name": "get_weather", "parameters": {"city": "Paris"}}}',  # stray brace: Llama 3.1 8B does this
        "",
        [call("get_weather", **PARIS)],
    ),
    # function tags: several, missing close tag, no arguments
    (
        '<function=get_weather>{"city": "Paris"}</function>\n'
        '<function=get_user_info>{"user_id": 1}</function>',
        "",
        [call("get_weather", **PARIS), call("get_user_info", user_id=1)],
    ),
    ('<function=get_weather>{"city": "Paris"}', "", [call("get_weather", **PARIS)]),
    ("<function=get_user_info></function>", "", [call("get_user_info")]),
    # text around calls
    ('Sure! Here you go: [get_weather(city="Paris")]', "Sure! Here you go:", [call("get_weather", **PARIS)]),
    (
        'I\'ll check. {"name": "get_weather", "parameters": {"city": "Paris"}}',
        "I'll check.",
        [call("get_weather", **PARIS)],
    ),
    (
        '[get_weather(city="Paris")]\nI will report back once I have it.',
        "I will report back once I have it.",
        [call("get_weather", **PARIS)],
    ),
    (
        'Checking: <function=get_weather>{"city": "Paris"}</function> (one moment)',
        "Checking: (one moment)",
        [call("get_weather", **PARIS)],
    ),
    (
        'Let me search.\n\n<|python_tag|>brave_search.call(query="gold price")<|eom_id|>',
        "Let me search.",
        [call("brave_search", query="gold price")],
    ),
    (
        "[1] says nothing; see [2]. " + '[get_weather(city="Paris")]',
        "[1] says nothing; see [2].",
        [call("get_weather", **PARIS)],
    ),
    # code fences
    (
        '```json\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```',
        "",
        [call("get_weather", **PARIS)],
    ),
    ('```\n[get_weather(city="Paris")]\n```', "", [call("get_weather", **PARIS)]),
    (
        'Here is the call:\n```json\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```\nDone.',
        "Here is the call: Done.",
        [call("get_weather", **PARIS)],
    ),
]


@pytest.mark.parametrize(("output", "content", "calls"), CALLS)
def test_parses_calls(output: str, content: str, calls: list[ParsedToolCall]) -> None:
    assert parse_tool_calls(output, TOOLS, builtin_tools=BUILTINS) == ParseResult(content, calls)


PLAIN_TEXT = [
    "",
    "   \n\t ",
    "The weather in San Francisco is 25 C.<|eot_id|>",
    '[get_weather(city="Paris"',  # unbalanced
    '[get_weather(city="Paris")',
    "[get_weather(city=Paris)]",  # a bare name is not a literal
    '{"name": "get_weather", "parameters": {"city": }',
    '{"name": "get_weather", "parameters": {"city": "Paris"}',
    '{"name": "get_stock_price", "parameters": {"ticker": "META"}}',  # unknown tool
    '{"name": "Bob", "age": 42}',  # a JSON answer, not a call
    '{"name": "get_weather", "parameters": "Paris"}',  # arguments are not an object
    '{"name": "get_weather", "city": "Paris"}',  # unexpected key: data, not a call
    '{"type": "object", "name": "get_weather", "parameters": {}}',
    '[{"name": "get_weather", "parameters": {}}, {"name": "nope", "parameters": {}}]',  # all or nothing
    "[get_stock_price(ticker='META')]",
    '[get_weather("Paris")]',  # positional argument
    '[get_weather(city="Paris"), get_weather("Rome")]',  # no cherry-picking from a bad list
    "[get_weather(**{'city': 'Paris'})]",
    '[get_weather(city=open("/etc/passwd"))]',
    "[get_weather(city='Paris') for _ in range(3)]",
    "You can ask me to get_weather for any city.",
    "I would call get_weather(city) for that.",
    "[1, 2, 3]",
    '{"result": 42}',
    '<function=get_weather>{"city": </function>',
    '<function=get_stock_price>{"ticker": "META"}</function>',
    "<function=get_weather",
    'brave_search("gold")',
    "```python\nprint('hello')\n```",
    "[" * 5000,
    "{" * 5000 + "}" * 5000,
    "(" * 300 + "get_weather" + ")" * 300,
    "[get_weather(city=" + "[" * 3000 + "]" * 3000 + ")]",
]


@pytest.mark.parametrize("output", PLAIN_TEXT)
def test_malformed_or_prose_is_plain_text(output: str) -> None:
    assert parse_tool_calls(output, TOOLS, builtin_tools=BUILTINS) == ParseResult(output.strip(), [])


@pytest.mark.parametrize(
    ("output", "tools", "builtins"),
    [
        (LLAMA31_BRAVE, TOOLS, ()),  # builtin call syntax only for enabled builtins
        (f"<|python_tag|>{LLAMA32_CODE}<|eom_id|>", TOOLS, ("brave_search",)),  # no code interpreter
        ('[get_weather(city="Paris")]', (), ()),  # no tools at all
        ('{"name": "get_weather", "parameters": {}}', ("get_user_info",), ()),
    ],
)
def test_calls_of_unavailable_tools_are_text(
    output: str, tools: tuple[str, ...], builtins: tuple[str, ...]
) -> None:
    result = parse_tool_calls(output, tools, builtin_tools=builtins)
    assert result == ParseResult(output.strip(), [])


def test_builtin_names_count_in_every_shape() -> None:
    output = '{"name": "brave_search", "parameters": {"query": "gold"}}'
    assert parse_tool_calls(output, (), builtin_tools=("brave_search",)).tool_calls == [
        call("brave_search", query="gold")
    ]


def test_python_tag_before_json_is_a_call_not_code() -> None:
    result = parse_tool_calls(LLAMA31_JSON, TOOLS, builtin_tools=BUILTINS)
    assert [c.name for c in result.tool_calls] == ["trending_songs"]


def test_never_raises_on_garbage() -> None:
    pieces = ["[", "]", "{", "}", "(", ")", '"', "'", "\\", ",", ";", ":", "=", " ", "\n", "get_weather",
              "brave_search", ".call", "<function=", "</function>", "<|python_tag|>", "<|eot_id|>", "name",
              "parameters", "1", "x", "```", "\x00", "é"]  # fmt: skip
    rng = random.Random(1234)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        result = parse_tool_calls(text, TOOLS, builtin_tools=BUILTINS)
        assert isinstance(result, ParseResult)
        if not result.tool_calls:
            assert result.content == text.strip()


# --- could_be_tool_call -------------------------------------------------------------------------------

CALL_OUTPUTS = [
    LLAMA32_TWO_CALLS,
    LLAMA32_USER_INFO,
    LLAMA32_TAGGED_LIST,
    LLAMA31_JSON,
    LLAMA31_FUNCTION_TAG,
    LLAMA31_BRAVE,
    f"<|python_tag|>{LLAMA31_CODE}<|eom_id|>",
    '  get_weather(city="Paris")',
    '[{"name": "get_weather", "parameters": {"city": "Paris"}}]',
    '{"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}',
    '```json\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```',
]


@pytest.mark.parametrize("output", CALL_OUTPUTS)
def test_every_prefix_of_a_call_could_be_a_call(output: str) -> None:
    for end in range(len(output) + 1):
        assert could_be_tool_call(output[:end], TOOLS, builtin_tools=BUILTINS), output[:end]


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        " ",
        "\n",
        "[",
        "[ ",
        "[get_",
        "{",
        '{"na',
        '{"name": "get',
        "{'name",
        "<",
        "<func",
        "<function=get",
        "brave_sea",
        "brave_search.ca",
        "brave_search(",
        "<|py",
        "<|python_tag|>",
        "get_w",
        "get_weather",
        "`",
        "```js",
        "[{",
    ],
)
def test_could_be_tool_call(prefix: str) -> None:
    assert could_be_tool_call(prefix, TOOLS, builtin_tools=BUILTINS)


@pytest.mark.parametrize(
    "prefix",
    [
        "Hello",
        "The weather",
        "The",
        "I'll check",
        "[1, 2",
        "[1",
        "[ x",
        "[get_weather ",
        "{1",
        '{"result"',
        '{"name": "Bob"',
        '{"name": 3',
        "<functio ",
        "<div>",
        "<function=unknown>",
        "get_weather ",
        "get_weathers",
        "brave_search.run(",
        "wolfram_alpha.call",
        "```python\nprint(1)",
        "\n\nSure",
        "42",
    ],
)
def test_could_not_be_tool_call(prefix: str) -> None:
    assert not could_be_tool_call(prefix, TOOLS, builtin_tools=("brave_search",))


def test_code_interpreter_makes_anything_after_the_tag_a_call() -> None:
    assert could_be_tool_call("<|python_tag|>import math", (), builtin_tools=("code_interpreter",))
    assert not could_be_tool_call("<|python_tag|>import math", TOOLS)
    assert not could_be_tool_call("import math", (), builtin_tools=("code_interpreter",))


@pytest.mark.parametrize("prefix", ["", "[", "[get_weather(", '{"name": "get_weather"', "<|python_tag|>"])
def test_no_tools_means_no_buffering(prefix: str) -> None:
    assert not could_be_tool_call(prefix, (), builtin_tools=())
