"""Llama 3.1 builtin tools: ``brave_search.call(query="...")`` (and ``wolfram_alpha``, ``photogen``), and
``<|python_tag|>`` followed by code for ``code_interpreter``. Only enabled builtins count."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from .base import ParsedToolCall, ParseResult, ToolNames
from .common import NAME_START, SourceText, Span, bare_call_at, could_be_call_expr, unfence
from .scanning import FormatParser

if TYPE_CHECKING:
    from .scanning import ParserChain

CODE_INTERPRETER = "code_interpreter"


class BuiltinToolParser(FormatParser):
    name: ClassVar[str] = "builtin"
    starts: ClassVar[re.Pattern[str]] = re.compile(rf"{NAME_START}(?=\.call\()")

    def worth_trying(self, token: str, tools: ToolNames) -> bool:
        return token in tools.names

    def call_at(self, text: SourceText, match: re.Match[str]) -> Span | None:
        return bare_call_at(text, match, text.tools.builtin)

    def may_start(self, rest: str, tools: ToolNames, *, after_python_tag: bool) -> bool:
        if after_python_tag and CODE_INTERPRETER in tools.builtin:
            return True  # whatever follows the tag is code to run
        return could_be_call_expr(rest, tools, plain=False, builtin=True)

    def tagged_output(
        self, before: str, after: str, tools: ToolNames, chain: ParserChain
    ) -> ParseResult | None:
        """With code_interpreter enabled, what follows the python tag is code to run, unless it is wholly
        calls (the tag also precedes JSON and builtin calls)."""
        if CODE_INTERPRETER not in tools.builtin:
            return None
        result = chain.scan(after, tools)
        if result.tool_calls and not result.content:
            return ParseResult(before.strip(), result.tool_calls)
        code = unfence(after)
        if code:
            return ParseResult(before.strip(), [ParsedToolCall(CODE_INTERPRETER, {"code": code})])
        return None
