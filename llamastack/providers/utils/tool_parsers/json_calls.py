"""Llama 3.1 JSON calls: ``{"name": f, "parameters": {...}}`` and its variants (``arguments``, the
OpenAI ``{"type": "function", "function": {...}}`` shape, JSON-encoded arguments), a JSON list of them,
several separated by ``;`` or newlines, and their Python-literal rendering (single quotes)."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from .base import ParsedToolCall, ToolNames
from .common import DECODER, INVALID, SourceText, Span, literal, starts_any
from .scanning import FormatParser

# Keys a JSON call object may have; anything else means it is data, not a call.
_CALL_KEYS = frozenset({"type", "name", "parameters", "arguments", "function", "id"})


class JsonToolParser(FormatParser):
    name: ClassVar[str] = "json"
    starts: ClassVar[re.Pattern[str]] = re.compile(r"[\[{]")

    def call_at(self, text: SourceText, match: re.Match[str]) -> Span | None:
        start = match.start()
        try:
            value, end = DECODER.raw_decode(text.body, start)
        except (ValueError, RecursionError):
            pass
        else:
            return _calls_from_json(value, text.tools), end  # [] skips non-call JSON whole
        end_or_none = text.balanced_end(start)
        if end_or_none is None:
            return None
        node = text.expr(start, end_or_none)
        value = INVALID if node is None else literal(node)
        return ([] if value is INVALID else _calls_from_json(value, text.tools)), end_or_none

    def may_start(self, rest: str, tools: ToolNames, *, after_python_tag: bool) -> bool:
        if rest[0] == "[":
            inner = rest[1:].lstrip()
            return not inner or (inner[0] == "{" and _could_be_call_object(inner, tools))
        return rest[0] == "{" and _could_be_call_object(rest, tools)


def _calls_from_json(value: Any, tools: ToolNames) -> list[ParsedToolCall]:
    """A call object or a non-empty list of them; all or nothing, so half a list never runs."""
    items = value if isinstance(value, list) else [value]
    calls = [call for item in items if (call := _call_from_dict(item, tools)) is not None]
    return calls if len(calls) == len(items) else []


def _call_from_dict(value: Any, tools: ToolNames) -> ParsedToolCall | None:
    if not isinstance(value, dict) or not value.keys() <= _CALL_KEYS:
        return None
    if value.get("type", "function") != "function":
        return None
    spec = value.get("function")
    if isinstance(spec, dict):  # OpenAI shape: {"type": "function", "function": {"name", "arguments"}}
        value = spec
    name = value.get("name")
    if not isinstance(name, str) or name not in tools.names:
        return None
    arguments = _as_arguments(value.get("parameters", value.get("arguments")))
    return None if arguments is None else ParsedToolCall(name, arguments)


def _as_arguments(value: Any) -> dict[str, Any] | None:
    if value is None:
        return {}
    if isinstance(value, str):  # JSON-encoded arguments, as OpenAI sends them
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _could_be_call_object(text: str, tools: ToolNames) -> bool:
    """Checks only the first key (and the name, when it comes first): enough to let prose JSON go."""
    rest = text[1:].lstrip()
    if not rest:
        return True
    key = _read_string(rest)
    if key is None:
        return False
    key_text, closed, rest = key
    if not closed:
        return starts_any(key_text, _CALL_KEYS)
    if key_text not in _CALL_KEYS:
        return False
    if key_text != "name":
        return True
    rest = rest.lstrip()
    if rest and rest[0] == ":":
        rest = rest[1:].lstrip()
    elif rest:
        return False
    if not rest:
        return True
    value = _read_string(rest)
    if value is None:
        return False
    name, closed, _ = value
    return name in tools.names if closed else starts_any(name, tools.names)


def _read_string(text: str) -> tuple[str, bool, str] | None:
    """A quoted string at the start of `text`: (contents so far, whether it closed, the rest)."""
    if text[0] not in "\"'":
        return None
    end = text.find(text[0], 1)
    if end == -1:
        return text[1:], False, ""
    return text[1:end], True, text[end + 1 :]
