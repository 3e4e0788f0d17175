"""One scan over the output that lets a set of format parsers find calls wherever they start.

Each format parser says where its calls may start (`starts`) and reads a call there (`call_at`).
A `ParserChain` scans once for the starts of all its parsers and, at each one, asks them in order:
the first that reads calls wins; a structure that some parser recognises as not a call (a JSON
answer, a malformed list) is skipped whole, so a call inside it is never cherry-picked. The formats
never read calls at the same position, so the order says who looks first, not what is found.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import ClassVar

from .base import ParsedToolCall, ParseResult, ToolNames
from .common import PYTHON_TAG, SourceText, Span, join_gaps, peel_framing, strip_end_tokens

log = logging.getLogger(__name__)

# Scanning tries to parse a call at every "[", "{", ... A failed json.JSONDecoder.raw_decode costs
# O(position) (the error computes a line number), so degenerate output ("[)[)[)...") would be quadratic;
# real outputs have far fewer candidates than this before a call.
_MAX_ATTEMPTS = 1000


class FormatParser:
    """One call format. Subclasses set `name` and `starts` and implement `call_at` and `may_start`;
    `parse` and `may_be_call` (the `ToolParser` protocol) read that format alone."""

    name: ClassVar[str]
    starts: ClassVar[re.Pattern[str]]  # where a call of this format may start

    def worth_trying(self, token: str, tools: ToolNames) -> bool:
        """A cheap look at the matched start; False skips it without counting an attempt."""
        return True

    def call_at(self, text: SourceText, match: re.Match[str]) -> Span | None:
        """The calls starting at `match`, ([], end) for a structure that is not a call, None if nothing
        of this format starts here."""
        raise NotImplementedError

    def may_start(self, rest: str, tools: ToolNames, *, after_python_tag: bool) -> bool:
        """Whether `rest` (a stream's start, framing taken off) may still become a call of this format."""
        raise NotImplementedError

    def tagged_output(
        self, before: str, after: str, tools: ToolNames, chain: ParserChain
    ) -> ParseResult | None:
        """A reading of the whole output around a `<|python_tag|>` that overrides scanning, if any."""
        return None

    def parse(self, text: str, tools: ToolNames) -> ParseResult:
        return ParserChain((self,)).parse(text, tools)

    def may_be_call(self, text: str, tools: ToolNames) -> bool:
        return ParserChain((self,)).may_be_call(text, tools)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ParserChain:
    """Several formats read together, in order; a `ToolParser` itself."""

    def __init__(self, parsers: Sequence[FormatParser]) -> None:
        if not parsers:
            raise ValueError("a parser chain needs at least one parser")
        self.parsers = tuple(parsers)
        self.name = "+".join(p.name for p in self.parsers)
        self._starts = re.compile("|".join(f"(?:{p.starts.pattern})" for p in self.parsers))

    def __repr__(self) -> str:
        return f"ParserChain({self.name})"

    def parse(self, text: str, tools: ToolNames) -> ParseResult:
        plain = ParseResult(content=text.strip(), tool_calls=[])
        if not tools.names or not plain.content:
            return plain
        try:
            result = self._parse(text, tools)
        except Exception:  # a parser bug must degrade to text, never fail the request
            log.warning("tool call parsing failed; returning the output as text", exc_info=True)
            return plain
        return result if result.tool_calls else plain

    def may_be_call(self, text: str, tools: ToolNames) -> bool:
        if not tools.names:
            return False
        framed = peel_framing(text)
        if framed is None:
            return True
        rest, tagged = framed
        return any(p.may_start(rest, tools, after_python_tag=tagged) for p in self.parsers)

    def scan(self, body: str, tools: ToolNames) -> ParseResult:
        """One pass over `body` looking for calls; the text between calls becomes the content."""
        text = SourceText(body, tools)
        calls: list[ParsedToolCall] = []
        gaps: list[str] = []
        last_end = search_from = attempts = 0
        while attempts < _MAX_ATTEMPTS:
            match = self._starts.search(body, search_from)
            if match is None:
                break
            search_from = match.end()
            start = match.start()
            if start in text.dead:
                continue
            here = [(p, m) for p in self.parsers if (m := p.starts.match(body, start)) is not None]
            if not any(p.worth_trying(m.group(), tools) for p, m in here):
                continue  # cheap rejections (prose like `print(`) do not count as attempts
            attempts += 1
            span = self._span_at(text, here)
            if span is None:
                continue
            found, search_from = span
            if found:
                gaps.append(body[last_end:start])
                calls.extend(found)
                last_end = search_from
        gaps.append(body[last_end:])
        return ParseResult(join_gaps(gaps), calls)

    def _span_at(self, text: SourceText, here: list[tuple[FormatParser, re.Match[str]]]) -> Span | None:
        skipped: Span | None = None
        for parser, match in here:
            span = parser.call_at(text, match)
            if span is None:
                continue
            if span[0]:
                return span
            skipped = skipped or span
        return skipped

    def _parse(self, text: str, tools: ToolNames) -> ParseResult:
        body = strip_end_tokens(text)
        if PYTHON_TAG in body:
            before, _, after = body.partition(PYTHON_TAG)
            after = after.replace(PYTHON_TAG, "").strip()
            for parser in self.parsers:
                result = parser.tagged_output(before, after, tools, self)
                if result is not None:
                    return result
        return self.scan(body.replace(PYTHON_TAG, ""), tools)
