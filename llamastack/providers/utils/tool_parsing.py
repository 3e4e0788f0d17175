"""Entry points for reading tool calls out of model output; the formats live in `tool_parsers/`.

Model output is untrusted: nothing here raises, and anything that is not a well-formed call of a known
tool stays plain text. Every format is accepted whichever one was prompted for; `prompt_format` and
`llama_version` only decide which format is tried first (see `tool_parsers.select_parser`).
"""

from __future__ import annotations

from collections.abc import Collection

from .tool_parsers import ParsedToolCall, ParseResult, ToolNames, select_parser

__all__ = ["ParseResult", "ParsedToolCall", "could_be_tool_call", "parse_tool_calls"]


def parse_tool_calls(
    text: str,
    tool_names: Collection[str],
    *,
    builtin_tools: Collection[str] = (),
    prompt_format: str | None = None,
    llama_version: str | None = None,
) -> ParseResult:
    """Split model output into plain text and calls of known tools; never raises."""
    parser = select_parser(prompt_format, llama_version)
    return parser.parse(text, ToolNames.of(tool_names, builtin_tools))


def could_be_tool_call(
    prefix: str,
    tool_names: Collection[str],
    *,
    builtin_tools: Collection[str] = (),
    prompt_format: str | None = None,
    llama_version: str | None = None,
) -> bool:
    """Whether output starting with `prefix` may still turn out to be a tool call (streaming buffer)."""
    parser = select_parser(prompt_format, llama_version)
    return parser.may_be_call(prefix, ToolNames.of(tool_names, builtin_tools))
