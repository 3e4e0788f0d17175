"""The per-format tool-call parsers on their own formats, and the registry that picks a request's chain.
The combined behaviour (every format in any output) is the case table in test_tool_parsing.py."""

from __future__ import annotations

import pytest

from llamastack.providers.utils.tool_parsers import (
    PARSERS,
    BuiltinToolParser,
    FormatParser,
    FunctionTagToolParser,
    JsonToolParser,
    ParsedToolCall,
    ParserChain,
    ParseResult,
    PythonListToolParser,
    ToolNames,
    ToolParser,
    UnknownToolFormatError,
    get_parser,
    select_parser,
)

TOOLS = ToolNames.of(("get_weather", "get_user_info"), ("brave_search", "code_interpreter"))
PARIS = ParsedToolCall("get_weather", {"city": "Paris"})

# (parser, an output in its format, the calls in it, an output in another format)
OWN_FORMAT: list[tuple[FormatParser, str, list[ParsedToolCall], str]] = [
    (
        JsonToolParser(),
        'Checking. {"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
        [PARIS],
        '[get_weather(city="Paris")]',
    ),
    (
        PythonListToolParser(),
        'Checking. [get_weather(city="Paris"), get_user_info(user_id=7)]',
        [PARIS, ParsedToolCall("get_user_info", {"user_id": 7})],
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    ),
    (
        FunctionTagToolParser(),
        'Checking. <function=get_weather>{"city": "Paris"}</function>',
        [PARIS],
        'brave_search.call(query="Paris")',
    ),
    (
        BuiltinToolParser(),
        'Checking. <|python_tag|>brave_search.call(query="Paris")<|eom_id|>',
        [ParsedToolCall("brave_search", {"query": "Paris"})],
        '<function=get_weather>{"city": "Paris"}</function>',
    ),
]
IDS = [parser.name for parser, *_ in OWN_FORMAT]


@pytest.mark.parametrize(("parser", "output", "calls", "other"), OWN_FORMAT, ids=IDS)
def test_each_parser_reads_its_own_format_whole(
    parser: FormatParser, output: str, calls: list[ParsedToolCall], other: str
) -> None:
    assert isinstance(parser, ToolParser)
    assert parser.parse(output, TOOLS) == ParseResult("Checking.", calls)
    # Alone, a parser leaves the other formats as text; the chain reads them all.
    assert parser.parse(other, TOOLS) == ParseResult(other, [])
    assert select_parser(parser.name).parse(other, TOOLS).tool_calls


@pytest.mark.parametrize(("parser", "output", "calls", "other"), OWN_FORMAT, ids=IDS)
def test_each_parser_holds_every_prefix_of_its_own_format(
    parser: FormatParser, output: str, calls: list[ParsedToolCall], other: str
) -> None:
    call = output.removeprefix("Checking. ")
    for end in range(len(call) + 1):
        assert parser.may_be_call(call[:end], TOOLS), call[:end]
    assert not parser.may_be_call("Checking", TOOLS)  # prose is released at once
    assert not parser.may_be_call(other, TOOLS)  # and so is another format, read alone
    assert not parser.may_be_call(call, ToolNames.of(()))  # no tools: nothing is held


def test_a_parser_only_knows_the_tools_it_is_given() -> None:
    unknown = '{"name": "get_stock_price", "parameters": {"ticker": "META"}}'
    assert JsonToolParser().parse(unknown, TOOLS).tool_calls == []
    assert not JsonToolParser().may_be_call('{"name": "get_stock', TOOLS)
    assert (
        not BuiltinToolParser()
        .parse('brave_search.call(query="x")', ToolNames.of(["get_weather"]))
        .tool_calls
    )


def test_code_interpreter_takes_what_follows_the_python_tag() -> None:
    output = "Let me compute.<|python_tag|>print(2 ** 10)<|eom_id|>"
    result = BuiltinToolParser().parse(output, TOOLS)
    assert result == ParseResult(
        "Let me compute.", [ParsedToolCall("code_interpreter", {"code": "print(2 ** 10)"})]
    )
    assert BuiltinToolParser().may_be_call("<|python_tag|>import math", TOOLS)
    assert not BuiltinToolParser().may_be_call("<|python_tag|>import math", ToolNames.of(["get_weather"]))


# --- registry and selection ------------------------------------------------------------------------------


def test_every_format_is_registered_by_its_name() -> None:
    assert set(PARSERS) == {"json", "python_list", "function_tag", "builtin"}
    for name, parser in PARSERS.items():
        assert get_parser(name) is parser and parser.name == name


def test_an_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(UnknownToolFormatError, match=r"'xml'.*known formats: builtin, function_tag, json"):
        get_parser("xml")
    with pytest.raises(ValueError, match="'xml'"):
        select_parser("xml")


@pytest.mark.parametrize(
    ("prompt_format", "llama_version", "order"),
    [
        ("json", None, ["json", "python_list", "function_tag", "builtin"]),
        ("python_list", "3.1", ["python_list", "builtin", "json", "function_tag"]),
        ("function_tag", "3.1", ["function_tag", "builtin", "json", "python_list"]),
        (None, "3.1", ["json", "builtin", "python_list", "function_tag"]),  # Llama 3.1's default
        (None, "3.2", ["python_list", "json", "function_tag", "builtin"]),  # 3.2/3.3 zero-shot
        (None, "3.3", ["python_list", "json", "function_tag", "builtin"]),
        (None, None, ["json", "python_list", "function_tag", "builtin"]),  # the generic JSON prompt
    ],
)
def test_the_selected_format_is_read_first_then_every_other(
    prompt_format: str | None, llama_version: str | None, order: list[str]
) -> None:
    chain = select_parser(prompt_format, llama_version)
    assert isinstance(chain, ParserChain) and isinstance(chain, ToolParser)
    assert [p.name for p in chain.parsers] == order


def test_a_chain_reads_calls_of_several_formats_in_one_output() -> None:
    output = (
        'First [get_weather(city="Paris")], then <function=get_user_info>{"user_id": 1}</function> '
        'and {"name": "get_weather", "parameters": {"city": "Rome"}}.'
    )
    expected = [
        PARIS,
        ParsedToolCall("get_user_info", {"user_id": 1}),
        ParsedToolCall("get_weather", {"city": "Rome"}),
    ]
    for prompt_format in ("json", "python_list", "function_tag"):
        result = select_parser(prompt_format).parse(output, TOOLS)
        assert result == ParseResult("First , then and .", expected)


def test_an_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one parser"):
        ParserChain([])
