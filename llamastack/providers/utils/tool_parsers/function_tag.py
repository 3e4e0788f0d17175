"""Llama 3.1 custom-tool tags: ``<function=f>{"a": 1}</function>``; the closing tag is optional
(models often drop it) and the arguments may be a Python dict literal."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from .base import ParsedToolCall, ToolNames
from .common import SourceText, Span, skip_space, starts_any
from .scanning import FormatParser

_OPEN = "<function="
_CLOSE = "</function>"


class FunctionTagToolParser(FormatParser):
    name: ClassVar[str] = "function_tag"
    starts: ClassVar[re.Pattern[str]] = re.compile(re.escape(_OPEN))

    def call_at(self, text: SourceText, match: re.Match[str]) -> Span | None:
        body = text.body
        name_start = match.end()
        name_end = body.find(">", name_start)
        if name_end == -1:
            return None
        name = body[name_start:name_end].strip()
        if name not in text.tools.names:
            return None
        pos = skip_space(body, name_end + 1)
        arguments: dict[str, Any]
        if body.startswith(_CLOSE, pos):
            arguments, end = {}, pos
        else:
            parsed = text.object_at(pos)
            if parsed is None:
                return None
            arguments, end = parsed
        pos = skip_space(body, end)
        if body.startswith(_CLOSE, pos):
            end = pos + len(_CLOSE)
        return [ParsedToolCall(name, arguments)], end

    def may_start(self, rest: str, tools: ToolNames, *, after_python_tag: bool) -> bool:
        if rest[0] != "<":
            return False
        if not rest.startswith(_OPEN):
            return _OPEN.startswith(rest)
        name, closed, _ = rest[len(_OPEN) :].partition(">")
        return name.strip() in tools.names if closed else starts_any(name, tools.names)
