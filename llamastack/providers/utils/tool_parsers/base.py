"""What every tool-call parser takes and gives, and the one Protocol they all implement."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class ParsedToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class ParseResult:
    content: str
    tool_calls: list[ParsedToolCall]


@dataclass(frozen=True, slots=True)
class ToolNames:
    """The tools a model may call in one request."""

    names: frozenset[str]  # every callable name, custom and builtin
    builtin: frozenset[str]  # Llama 3.1 builtin tools (brave_search, wolfram_alpha, code_interpreter...)

    @classmethod
    def of(cls, tool_names: Collection[str], builtin_tools: Collection[str] = ()) -> ToolNames:
        builtin = frozenset(builtin_tools)
        return cls(frozenset(tool_names) | builtin, builtin)


@runtime_checkable
class ToolParser(Protocol):
    """Reads tool calls out of a model's text. Model output is untrusted: neither method raises, and
    anything that is not a well-formed call of a known tool stays plain text."""

    name: str

    def parse(self, text: str, tools: ToolNames) -> ParseResult:
        """The whole output split into plain text and calls."""
        ...

    def may_be_call(self, text: str, tools: ToolNames) -> bool:
        """For streaming: whether output starting with `text` may still turn out to be a call. While
        it may, the text is held back; once it cannot, it can be released as content."""
        ...
