"""Turns raw model completions into structured tool calls, one parser per call format.

Llama 3.1/3.2/3.3 models emit calls in several shapes depending on the prompt (and on their mood):

* ``json`` (`json_calls.py`): ``{"name": f, "parameters": {...}}`` and variants (Llama 3.1 JSON mode);
* ``python_list`` (`python_list.py`): ``[f(a=1), g(b="x")]`` or one bare call (Llama 3.2 zero-shot);
* ``function_tag`` (`function_tag.py`): ``<function=f>{...}</function>`` (Llama 3.1 custom-tool tag);
* ``builtin`` (`builtin_tools.py`): ``brave_search.call(query="...")`` and ``<|python_tag|>`` + code.

Each parser implements `ToolParser` (`base.py`): a whole-text `parse` and a streaming `may_be_call`.
`select_parser` (`registry.py`) gives the chain a request is read with; `scanning.py` runs a chain over
the text once; `common.py` holds the helpers the formats share.
"""

from .base import ParsedToolCall, ParseResult, ToolNames, ToolParser
from .builtin_tools import BuiltinToolParser
from .function_tag import FunctionTagToolParser
from .json_calls import JsonToolParser
from .python_list import PythonListToolParser
from .registry import PARSERS, UnknownToolFormatError, get_parser, select_parser, selected_format
from .scanning import FormatParser, ParserChain

__all__ = [
    "PARSERS",
    "BuiltinToolParser",
    "FormatParser",
    "FunctionTagToolParser",
    "JsonToolParser",
    "ParseResult",
    "ParsedToolCall",
    "ParserChain",
    "PythonListToolParser",
    "ToolNames",
    "ToolParser",
    "UnknownToolFormatError",
    "get_parser",
    "select_parser",
    "selected_format",
]
