"""Turns raw Llama 3.x completions into structured tool calls.

Llama 3.1/3.2/3.3 models emit calls in several shapes depending on the prompt (and on their mood), so
every shape is accepted whichever one was requested:

* JSON objects: ``{"name": f, "parameters": {...}}`` and its variants, a JSON list of them, or several
  separated by ``;``/newlines (Llama 3.1 JSON mode);
* a Python list of keyword-only calls, ``[f(a=1), g(b="x")]`` (Llama 3.2 zero-shot), or one bare call;
* ``<function=f>{...}</function>`` (Llama 3.1 custom-tool tag);
* ``brave_search.call(query="...")`` and ``<|python_tag|>`` + code (Llama 3.1 builtin tools).

Model output is untrusted: nothing here raises, and anything that is not a well-formed call of a known
tool stays plain text.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_PYTHON_TAG = "<|python_tag|>"
_END_TOKENS = ("<|eom_id|>", "<|eot_id|>")
_FUNCTION_TAG = "<function="
_FUNCTION_CLOSE = "</function>"
_BUILTIN_CALL = ".call("
_CODE_INTERPRETER = "code_interpreter"
_FENCE = "```"

# Keys a JSON call object may have; anything else means it is data, not a call.
_JSON_CALL_KEYS = frozenset({"type", "name", "parameters", "arguments", "function", "id"})

# Scanning tries to parse a call at every "[", "{", ... A failed json.JSONDecoder.raw_decode costs
# O(position) (the error computes a line number), so degenerate output ("[)[)[)...") would be quadratic;
# real outputs have far fewer candidates than this before a call.
_MAX_ATTEMPTS = 1000

# Where a call may start: a function tag, an opening bracket/brace, or an identifier directly followed
# by "(" or ".call(" (the lookbehind keeps us from starting inside a longer name or attribute chain).
_CANDIDATE = re.compile(r"<function=|[\[{]|(?<![\w.])[^\W\d]\w*(?=\(|\.call\()")
_IDENTIFIER = re.compile(r"[^\W\d]\w*")
_BRACKET_EVENT = re.compile(r"[\[\](){}\"'\\]")
_PAIRS = {"[": "]", "(": ")", "{": "}"}
_OPENERS = frozenset({_FUNCTION_TAG, "[", "{"})
_FENCE_BEFORE = re.compile(r"```[\w+-]*[ \t]*\n?\s*\Z")
_FENCE_AFTER = re.compile(r"\A\s*```")
_FENCED_BLOCK = re.compile(r"\A```[\w+-]*[ \t]*\n(.*?)\n?```\Z", re.DOTALL)
# Text between/around calls that carries nothing (Llama 3.1 sometimes adds a stray closing brace).
_SEPARATORS = re.compile(r"[\s;,()\]}]*")

_DECODER = json.JSONDecoder()
_INVALID = object()  # sentinel: None is a valid argument value


@dataclass(slots=True)
class ParsedToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class ParseResult:
    content: str
    tool_calls: list[ParsedToolCall]


@dataclass(frozen=True, slots=True)
class _Tools:
    names: frozenset[str]  # every callable name, custom and builtin
    builtin: frozenset[str]

    @classmethod
    def of(cls, tool_names: Collection[str], builtin_tools: Collection[str]) -> _Tools:
        builtin = frozenset(builtin_tools)
        return cls(frozenset(tool_names) | builtin, builtin)


# A parse attempt at one position: the calls found (empty = a structure that is not a call, to be kept
# as text and skipped whole) and the index just past it.
_Span = tuple[list[ParsedToolCall], int]


def parse_tool_calls(
    text: str, tool_names: Collection[str], *, builtin_tools: Collection[str] = ()
) -> ParseResult:
    """Split model output into plain text and calls of known tools; never raises."""
    plain = ParseResult(content=text.strip(), tool_calls=[])
    tools = _Tools.of(tool_names, builtin_tools)
    if not tools.names or not plain.content:
        return plain
    try:
        result = _parse(text, tools)
    except Exception:  # a parser bug must degrade to text, never fail the request
        log.warning("tool call parsing failed; returning the output as text", exc_info=True)
        return plain
    return result if result.tool_calls else plain


def could_be_tool_call(
    prefix: str, tool_names: Collection[str], *, builtin_tools: Collection[str] = ()
) -> bool:
    """Whether output starting with `prefix` may still turn out to be a tool call (streaming buffer)."""
    tools = _Tools.of(tool_names, builtin_tools)
    if not tools.names:
        return False
    rest = prefix
    while True:  # peel what may precede a call: whitespace, the python tag, a code fence
        rest = rest.lstrip()
        if not rest or _PYTHON_TAG.startswith(rest) or _FENCE.startswith(rest):
            return True
        if rest.startswith(_PYTHON_TAG):
            if _CODE_INTERPRETER in tools.builtin:
                return True  # whatever follows the tag is code to run
            rest = rest[len(_PYTHON_TAG) :]
        elif rest.startswith(_FENCE):
            newline = rest.find("\n")
            if newline == -1:
                return True  # still inside the fence's language tag
            rest = rest[newline + 1 :]
        else:
            break
    if rest[0] == "{":
        return _could_be_json_call(rest, tools)
    if rest[0] == "[":
        inner = rest[1:].lstrip()
        if not inner:
            return True
        return _could_be_json_call(inner, tools) if inner[0] == "{" else _could_be_named_call(inner, tools)
    if rest[0] == "<":
        return _could_be_function_tag(rest, tools)
    return _could_be_named_call(rest, tools)


# --- parsing ---------------------------------------------------------------------------------------


def _parse(text: str, tools: _Tools) -> ParseResult:
    body = _strip_end_tokens(text)
    if _CODE_INTERPRETER in tools.builtin and _PYTHON_TAG in body:
        before, _, after = body.partition(_PYTHON_TAG)
        after = after.replace(_PYTHON_TAG, "").strip()
        # The tag also precedes JSON/builtin calls; only output that is not wholly calls is code.
        result = _Scanner(after, tools).scan()
        if result.tool_calls and not result.content:
            return ParseResult(before.strip(), result.tool_calls)
        code = _unfence(after)
        if code:
            return ParseResult(before.strip(), [ParsedToolCall(_CODE_INTERPRETER, {"code": code})])
    return _Scanner(body.replace(_PYTHON_TAG, ""), tools).scan()


def _strip_end_tokens(text: str) -> str:
    text = text.strip()
    while text.endswith(_END_TOKENS):
        text = text.rpartition("<|")[0].rstrip()
    return text


def _unfence(text: str) -> str:
    match = _FENCED_BLOCK.match(text)
    return (match.group(1) if match else text).strip()


@dataclass(slots=True)
class _Scanner:
    """One pass over `body` looking for calls; the text between calls becomes the content."""

    body: str
    tools: _Tools
    # Openers whose bracket scan is known to fail. A failed scan fails identically from every opener
    # still open at that point, so remembering them keeps degenerate output ("[[[[...") linear.
    dead: set[int] = field(default_factory=set)

    def scan(self) -> ParseResult:
        calls: list[ParsedToolCall] = []
        gaps: list[str] = []
        last_end = search_from = attempts = 0
        while attempts < _MAX_ATTEMPTS:
            match = _CANDIDATE.search(self.body, search_from)
            if match is None:
                break
            search_from = match.end()
            token = match.group()
            if match.start() in self.dead or (token not in _OPENERS and token not in self.tools.names):
                continue  # cheap rejections (prose like `print(`) do not count as attempts
            attempts += 1
            span = self.try_at(match)
            if span is None:
                continue
            found, search_from = span
            if found:
                gaps.append(self.body[last_end : match.start()])
                calls.extend(found)
                last_end = search_from
        gaps.append(self.body[last_end:])
        return ParseResult(_join_gaps(gaps), calls)

    def try_at(self, match: re.Match[str]) -> _Span | None:
        token = match.group()
        if token == _FUNCTION_TAG:
            return self.function_tag_at(match.start())
        if token in _OPENERS:
            return self.bracketed_at(match.start())
        return self.bare_call_at(match)

    def bracketed_at(self, start: int) -> _Span | None:
        """A JSON value or a Python literal/call list starting at `start`."""
        try:
            value, end = _DECODER.raw_decode(self.body, start)
        except (ValueError, RecursionError):
            pass
        else:
            return _calls_from_json(value, self.tools), end  # [] skips non-call JSON whole
        end = self.balanced_end(start)
        if end is None:
            return None
        # A balanced span that is not a call list (bad syntax, a positional argument...) stays text as a
        # whole, so a well-formed call inside a malformed list is never cherry-picked.
        node = _parse_expr(self.body[start:end])
        return (_calls_from_python(node, self.tools) if node is not None else []), end

    def bare_call_at(self, match: re.Match[str]) -> _Span | None:
        """`name(...)` of a known tool, or `builtin.call(...)`."""
        name, after = match.group(), match.end()
        known = self.tools.names if self.body.startswith("(", after) else self.tools.builtin
        if name not in known or _previous_char(self.body, match.start()) in ("[", ","):
            return None  # an element of a list that did not parse (unclosed?): the list is all or nothing
        end = self.balanced_end(self.body.index("(", after))
        if end is None:
            return None
        call = _call_from_ast(_parse_expr(self.body[match.start() : end]), self.tools)
        return ([call], end) if call else None

    def function_tag_at(self, start: int) -> _Span | None:
        """`<function=name>{json}</function>`; the closing tag is optional (models often drop it)."""
        body = self.body
        name_start = start + len(_FUNCTION_TAG)
        name_end = body.find(">", name_start)
        if name_end == -1:
            return None
        name = body[name_start:name_end].strip()
        if name not in self.tools.names:
            return None
        pos = _skip_space(body, name_end + 1)
        if body.startswith(_FUNCTION_CLOSE, pos):
            arguments, end = {}, pos
        else:
            parsed = self.object_at(pos)
            if parsed is None:
                return None
            arguments, end = parsed
        pos = _skip_space(body, end)
        if body.startswith(_FUNCTION_CLOSE, pos):
            end = pos + len(_FUNCTION_CLOSE)
        return [ParsedToolCall(name, arguments)], end

    def object_at(self, pos: int) -> tuple[dict[str, Any], int] | None:
        """A JSON object at `pos`, or a Python dict literal (models sometimes use single quotes)."""
        if not self.body.startswith("{", pos):
            return None
        try:
            value, end = _DECODER.raw_decode(self.body, pos)
        except (ValueError, RecursionError):
            end = self.balanced_end(pos)
            if end is None:
                return None
            node = _parse_expr(self.body[pos:end])
            value = _literal(node) if isinstance(node, ast.Dict) else _INVALID
        return (value, end) if isinstance(value, dict) else None

    def balanced_end(self, start: int) -> int | None:
        """Index just past the bracket closing the one at `start`, skipping quoted strings."""
        if start in self.dead:
            return None
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
                    return index + 1
        self.dead.update(position for _, position in stack)
        return None


def _join_gaps(gaps: list[str]) -> str:
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


def _previous_char(text: str, pos: int) -> str:
    """The last non-space character before `pos`, or ""."""
    while pos > 0 and text[pos - 1].isspace():
        pos -= 1
    return text[pos - 1] if pos else ""


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


# --- turning parsed values into calls ---------------------------------------------------------------


def _calls_from_json(value: Any, tools: _Tools) -> list[ParsedToolCall]:
    """A call object or a non-empty list of them; all or nothing, so half a list never runs."""
    items = value if isinstance(value, list) else [value]
    calls = [call for item in items if (call := _call_from_dict(item, tools)) is not None]
    return calls if len(calls) == len(items) else []


def _call_from_dict(value: Any, tools: _Tools) -> ParsedToolCall | None:
    if not isinstance(value, dict) or not value.keys() <= _JSON_CALL_KEYS:
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


def _calls_from_python(node: ast.expr, tools: _Tools) -> list[ParsedToolCall]:
    if isinstance(node, ast.List) and node.elts and all(isinstance(e, ast.Call) for e in node.elts):
        calls = [call for element in node.elts if (call := _call_from_ast(element, tools)) is not None]
        return calls if len(calls) == len(node.elts) else []
    if isinstance(node, ast.Call):
        call = _call_from_ast(node, tools)
        return [call] if call else []
    value = _literal(node)  # a Python-literal rendering of the JSON shapes
    return [] if value is _INVALID else _calls_from_json(value, tools)


def _call_from_ast(node: ast.expr | None, tools: _Tools) -> ParsedToolCall | None:
    """`name(k=literal, ...)` or `builtin.call(k=literal, ...)`; keyword arguments only."""
    if not isinstance(node, ast.Call) or node.args:
        return None
    name = _callee_name(node.func, tools)
    if name is None:
        return None
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        value = _literal(keyword.value)
        if keyword.arg is None or value is _INVALID:  # **kwargs, or a name/expression, not a value
            return None
        arguments[keyword.arg] = value
    return ParsedToolCall(name, arguments)


def _callee_name(func: ast.expr, tools: _Tools) -> str | None:
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


def _parse_expr(source: str) -> ast.expr | None:
    try:
        return ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _literal(node: ast.expr) -> Any:
    """A literal's value made JSON-shaped (tuples become lists); `_INVALID` for anything else."""
    try:
        return json.loads(json.dumps(ast.literal_eval(node)))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _INVALID


# --- streaming prefix checks ------------------------------------------------------------------------


def _could_be_named_call(text: str, tools: _Tools) -> bool:
    """`name(`, `builtin.call(`, or a still-growing prefix of one."""
    match = _IDENTIFIER.match(text)
    if match is None:
        return False
    name, after = match.group(), text[match.end() :]
    if not after:
        return _starts_any(name, tools.names)
    if after[0] == "(":
        return name in tools.names
    return name in tools.builtin and _is_prefix_either_way(after, _BUILTIN_CALL)


def _could_be_function_tag(text: str, tools: _Tools) -> bool:
    if not text.startswith(_FUNCTION_TAG):
        return _FUNCTION_TAG.startswith(text)
    name, closed, _ = text[len(_FUNCTION_TAG) :].partition(">")
    return name.strip() in tools.names if closed else _starts_any(name, tools.names)


def _could_be_json_call(text: str, tools: _Tools) -> bool:
    """Checks only the first key (and the name, when it comes first): enough to let prose JSON go."""
    rest = text[1:].lstrip()
    if not rest:
        return True
    key = _read_string(rest)
    if key is None:
        return False
    key_text, closed, rest = key
    if not closed:
        return _starts_any(key_text, _JSON_CALL_KEYS)
    if key_text not in _JSON_CALL_KEYS:
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
    return name in tools.names if closed else _starts_any(name, tools.names)


def _read_string(text: str) -> tuple[str, bool, str] | None:
    """A quoted string at the start of `text`: (contents so far, whether it closed, the rest)."""
    if text[0] not in "\"'":
        return None
    end = text.find(text[0], 1)
    if end == -1:
        return text[1:], False, ""
    return text[1:end], True, text[end + 1 :]


def _starts_any(fragment: str, names: Collection[str]) -> bool:
    return any(name.startswith(fragment) for name in names)


def _is_prefix_either_way(text: str, expected: str) -> bool:
    return text.startswith(expected) or expected.startswith(text)
