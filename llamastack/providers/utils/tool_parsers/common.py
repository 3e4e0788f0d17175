"""Helpers shared by the per-format parsers: balanced brackets, JSON objects, Python literals and
calls, prefix checks, and the framing models put around calls (special tokens, code fences)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .base import ParsedToolCall, ToolNames

PYTHON_TAG = "<|python_tag|>"
END_TOKENS = ("<|eom_id|>", "<|eot_id|>")
FENCE = "```"
IDENTIFIER = re.compile(r"[^\W\d]\w*")
# Where a call named by an identifier may start: not inside a longer name or attribute chain.
NAME_START = r"(?<![\w.])[^\W\d]\w*"

_BRACKET_EVENT = re.compile(r"[\[\](){}\"'\\]")
_PAIRS = {"[": "]", "(": ")", "{": "}"}
_FENCE_BEFORE = re.compile(r"```[\w+-]*[ \t]*\n?\s*\Z")
_FENCE_AFTER = re.compile(r"\A\s*```")
_FENCED_BLOCK = re.compile(r"\A```[\w+-]*[ \t]*\n(.*?)\n?```\Z", re.DOTALL)
# Text between/around calls that carries nothing (Llama 3.1 sometimes adds a stray closing brace).
_SEPARATORS = re.compile(r"[\s;,()\]}]*")

DECODER = json.JSONDecoder()
INVALID = object()  # sentinel: None is a valid argument value

# A parse attempt at one position: the calls found (empty = a structure that is not a call, to be kept
# as text and skipped whole) and the index just past it.
Span = tuple[list[ParsedToolCall], int]


@dataclass(slots=True)
class SourceText:
    """The text being scanned, with what is learnt about it shared by every parser that looks at it."""

    body: str
    tools: ToolNames
    # Openers whose bracket scan is known to fail. A failed scan fails identically from every opener
    # still open at that point, so remembering them keeps degenerate output ("[[[[...") linear.
    dead: set[int] = field(default_factory=set)
    # Successful scans and parses, so that two parsers trying the same bracket do not redo the work.
    _ends: dict[int, int] = field(default_factory=dict)
    _exprs: dict[tuple[int, int], ast.expr | None] = field(default_factory=dict)

    def balanced_end(self, start: int) -> int | None:
        """Index just past the bracket closing the one at `start`, skipping quoted strings."""
        if start in self.dead:
            return None
        if start in self._ends:
            return self._ends[start]
        stack = [(_PAIRS[self.body[start]], start)]  # (expected closer, opener position)
        quote: str | None = None
        escaped_at = -1
        for event in _BRACKET_EVENT.finditer(self.body, start + 1):
            index, char = event.start(), event.group()
            if index == escaped_at:
                continue
            if quote is not None:
                if char == "\\":
                    escaped_at = index + 1
                elif char == quote:
                    quote = None
            elif char in "\"'":
                quote = char
            elif char in _PAIRS:
                stack.append((_PAIRS[char], index))
            elif char in ")]}":
                if char != stack[-1][0]:
                    break  # mismatched closer
                stack.pop()
                if not stack:
                    self._ends[start] = index + 1
                    return index + 1
        self.dead.update(position for _, position in stack)
        return None

    def expr(self, start: int, end: int) -> ast.expr | None:
        """`body[start:end]` parsed as one Python expression, or None."""
        key = (start, end)
        if key not in self._exprs:
            self._exprs[key] = parse_expr(self.body[start:end])
        return self._exprs[key]

    def object_at(self, pos: int) -> tuple[dict[str, Any], int] | None:
        """A JSON object at `pos`, or a Python dict literal (models sometimes use single quotes)."""
        if not self.body.startswith("{", pos):
            return None
        try:
            value, end = DECODER.raw_decode(self.body, pos)
        except (ValueError, RecursionError):
            end_or_none = self.balanced_end(pos)
            if end_or_none is None:
                return None
            end = end_or_none
            node = self.expr(pos, end)
            value = literal(node) if isinstance(node, ast.Dict) else INVALID
        return (value, end) if isinstance(value, dict) else None


# --- Python expressions ------------------------------------------------------------------------------


def parse_expr(source: str) -> ast.expr | None:
    try:
        return ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def literal(node: ast.expr) -> Any:
    """A literal's value made JSON-shaped (tuples become lists); `INVALID` for anything else."""
    try:
        return json.loads(json.dumps(ast.literal_eval(node)))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return INVALID


def call_from_ast(node: ast.expr | None, tools: ToolNames) -> ParsedToolCall | None:
    """`name(k=literal, ...)` or `builtin.call(k=literal, ...)`; keyword arguments only."""
    if not isinstance(node, ast.Call) or node.args:
        return None
    name = _callee_name(node.func, tools)
    if name is None:
        return None
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        value = literal(keyword.value)
        if keyword.arg is None or value is INVALID:  # **kwargs, or a name/expression, not a value
            return None
        arguments[keyword.arg] = value
    return ParsedToolCall(name, arguments)


def _callee_name(func: ast.expr, tools: ToolNames) -> str | None:
    if isinstance(func, ast.Name):
        return func.id if func.id in tools.names else None
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "call"
        and isinstance(func.value, ast.Name)
        and func.value.id in tools.builtin
    ):
        return func.value.id
    return None


def bare_call_at(text: SourceText, match: re.Match[str], known: frozenset[str]) -> Span | None:
    """A call expression of a `known` name starting at `match` (the name), outside any list."""
    name = match.group()
    if name not in known or previous_char(text.body, match.start()) in ("[", ","):
        return None  # an element of a list that did not parse (unclosed?): the list is all or nothing
    end = text.balanced_end(text.body.index("(", match.end()))
    if end is None:
        return None
    call = call_from_ast(text.expr(match.start(), end), text.tools)
    return ([call], end) if call else None


# --- prefix checks (streaming) -----------------------------------------------------------------------

_BUILTIN_CALL = ".call("


def could_be_call_expr(text: str, tools: ToolNames, *, plain: bool, builtin: bool) -> bool:
    """`name(` (plain) or `builtin.call(` (builtin), or a still-growing prefix of one."""
    match = IDENTIFIER.match(text)
    if match is None:
        return False
    name, after = match.group(), text[match.end() :]
    if not after:
        return (plain and starts_any(name, tools.names)) or (builtin and starts_any(name, tools.builtin))
    if after[0] == "(":
        return plain and name in tools.names
    return builtin and name in tools.builtin and _is_prefix_either_way(after, _BUILTIN_CALL)


def starts_any(fragment: str, names: Collection[str]) -> bool:
    return any(name.startswith(fragment) for name in names)


def _is_prefix_either_way(text: str, expected: str) -> bool:
    return text.startswith(expected) or expected.startswith(text)


def previous_char(text: str, pos: int) -> str:
    """The last non-space character before `pos`, or ""."""
    while pos > 0 and text[pos - 1].isspace():
        pos -= 1
    return text[pos - 1] if pos else ""


def skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


# --- framing ------------------------------------------------------------------------------------------


def strip_end_tokens(text: str) -> str:
    text = text.strip()
    while text.endswith(END_TOKENS):
        text = text.rpartition("<|")[0].rstrip()
    return text


def unfence(text: str) -> str:
    match = _FENCED_BLOCK.match(text)
    return (match.group(1) if match else text).strip()


def join_gaps(gaps: list[str]) -> str:
    """Join the text between calls, dropping code fences and separators that only framed the calls."""
    kept: list[str] = []
    for index, gap in enumerate(gaps):
        if index > 0:
            gap = _FENCE_AFTER.sub("", gap, count=1)
        if index < len(gaps) - 1:
            gap = _FENCE_BEFORE.sub("", gap, count=1)
        gap = gap.strip()
        if not _SEPARATORS.fullmatch(gap):
            kept.append(gap)
    return " ".join(kept)


def peel_framing(prefix: str) -> tuple[str, bool] | None:
    """What may precede a call (whitespace, the python tag, a code fence) taken off the start of a
    stream: (the rest, whether a python tag was seen), or None while the framing itself is unfinished."""
    rest, tagged = prefix, False
    while True:
        rest = rest.lstrip()
        if not rest or PYTHON_TAG.startswith(rest) or FENCE.startswith(rest):
            return None
        if rest.startswith(PYTHON_TAG):
            tagged = True
            rest = rest[len(PYTHON_TAG) :]
        elif rest.startswith(FENCE):
            newline = rest.find("\n")
            if newline == -1:
                return None  # still inside the fence's language tag
            rest = rest[newline + 1 :]
        else:
            return rest, tagged
