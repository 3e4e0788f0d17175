"""Llama 3.2/3.3 pythonic calls: a list of keyword-only calls, ``[f(a=1), g(b="x")]``, or one bare call
``f(a=1)``. Arguments must be literals; nothing is ever evaluated."""

from __future__ import annotations

import ast
import re
from typing import ClassVar

from .base import ToolNames
from .common import NAME_START, SourceText, Span, bare_call_at, call_from_ast, could_be_call_expr
from .scanning import FormatParser


class PythonListToolParser(FormatParser):
    name: ClassVar[str] = "python_list"
    starts: ClassVar[re.Pattern[str]] = re.compile(rf"\[|{NAME_START}(?=\()")

    def worth_trying(self, token: str, tools: ToolNames) -> bool:
        return token == "[" or token in tools.names

    def call_at(self, text: SourceText, match: re.Match[str]) -> Span | None:
        if match.group() != "[":
            return bare_call_at(text, match, text.tools.names)
        end = text.balanced_end(match.start())
        if end is None:
            return None
        # A balanced list that is not a call list (bad syntax, a positional argument...) stays text as a
        # whole, so a well-formed call inside a malformed list is never cherry-picked.
        node = text.expr(match.start(), end)
        if not isinstance(node, ast.List) or not node.elts:
            return [], end
        calls = [call for element in node.elts if (call := call_from_ast(element, text.tools)) is not None]
        return (calls if len(calls) == len(node.elts) else []), end

    def may_start(self, rest: str, tools: ToolNames, *, after_python_tag: bool) -> bool:
        if rest[0] == "[":
            inner = rest[1:].lstrip()
            # List elements may be builtin calls too (`[brave_search.call(query="x")]`).
            return not inner or could_be_call_expr(inner, tools, plain=True, builtin=True)
        return could_be_call_expr(rest, tools, plain=True, builtin=False)
