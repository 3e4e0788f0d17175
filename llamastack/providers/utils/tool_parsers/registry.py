"""The tool-call parsers by name, and the chain a request's output is read with.

The selected format (the request's ``tool_prompt_format``, else the model family's default) is read
first, the others after it: models do not always answer in the format they were prompted with, so
every format is accepted whichever one was asked for. An unknown format name is a caller's bug
(requests are validated against ``ToolPromptFormat`` before they get here) and raises
``UnknownToolFormatError`` naming the known ones rather than silently reading something else.
"""

from __future__ import annotations

from functools import cache

from ..tool_prompts import default_prompt_format
from .builtin_tools import BuiltinToolParser
from .function_tag import FunctionTagToolParser
from .json_calls import JsonToolParser
from .python_list import PythonListToolParser
from .scanning import FormatParser, ParserChain

PARSERS: dict[str, FormatParser] = {
    parser.name: parser
    for parser in (JsonToolParser(), PythonListToolParser(), FunctionTagToolParser(), BuiltinToolParser())
}
# The order of the formats after the selected one.
_FALLBACK_ORDER = ("json", "python_list", "function_tag", "builtin")


class UnknownToolFormatError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown tool call format '{name}'; known formats: {', '.join(sorted(PARSERS))}.")


def get_parser(name: str) -> FormatParser:
    """The parser of one format, reading that format alone."""
    try:
        return PARSERS[name]
    except KeyError:
        raise UnknownToolFormatError(name) from None


def selected_format(prompt_format: str | None, llama_version: str | None = None) -> str:
    """The format the model was asked to answer in: the request's, else its family's default (Llama 3.x
    per version, other models the JSON of the generic tool prompt)."""
    if prompt_format:
        return prompt_format
    return default_prompt_format(llama_version) if llama_version else "json"


@cache
def select_parser(prompt_format: str | None = None, llama_version: str | None = None) -> ParserChain:
    """Every format, the selected one first (then Llama 3.1's builtin-tool calls, the only family that
    has them), then the rest."""
    first = get_parser(selected_format(prompt_format, llama_version))
    order = [first.name]
    if llama_version == "3.1":
        order.append(BuiltinToolParser.name)
    order += [name for name in _FALLBACK_ORDER if name not in order]
    return ParserChain([PARSERS[name] for name in order])
