"""Checks a GBNF grammar before it reaches llama.cpp, whose parser and sampler trust their input.

llama.cpp turns a grammar it cannot use (no ``root`` rule, a rule that is referenced but never
defined, left recursion, a syntax error) into a null sampler, and llama-cpp-python then crashes the
process with it; its recursive-descent parser also recurses once per nesting level. So every
client-supplied grammar (and every grammar made from a client's JSON schema) goes through
``check_grammar`` first, which follows llama.cpp's own grammar syntax (``grammars/README.md``):

    rule     ::= name "::=" alternates          (one per line; newlines allowed inside parentheses)
    element  ::= "literal" | [char-class] | [^char-class] | name | "(" alternates ")" | "."
                 | <token> | <[token-id]> | !<...>,  each optionally followed by * + ? {m} {m,} {m,n}

and rejects, with a message naming the rule and the problem, what llama.cpp would reject or could
not survive. There is no maintained Python GBNF validator to lean on, hence this small parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llamastack.stack.errors import BadRequestError

MAX_GRAMMAR_CHARS = 256 * 1024
MAX_NESTING = 64
# llama.cpp refuses more repetitions than this (MAX_REPETITION_THRESHOLD); it expands them into rules.
MAX_REPETITIONS = 2000
MAX_RULES = 4096

_ESCAPES = {"t", "n", "r", '"', "\\", "[", "]", "-"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class GrammarError(BadRequestError):
    pass


@dataclass(slots=True)
class _Element:
    kind: str  # "literal", "class", "any", "ref", "group", "token"
    ref: str | None = None
    alternates: list[list[_Element]] = field(default_factory=list)
    empty_literal: bool = False
    min_repeat: int = 1
    token_id: int | None = None


def _is_word(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "-")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.rules: dict[str, list[list[_Element]]] = {}
        self.token_ids: list[int] = []
        self.rule = ""

    # --- low level ------------------------------------------------------------------------------

    def fail(self, problem: str) -> GrammarError:
        line = self.text.count("\n", 0, self.pos) + 1
        near = self.text[self.pos : self.pos + 20].split("\n")[0]
        where = f" in rule '{self.rule}'" if self.rule else ""
        return GrammarError(
            f"Invalid grammar{where} (line {line}{f', near {near!r}' if near else ''}): {problem}."
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def space(self, newline_ok: bool) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t" or (newline_ok and c in "\r\n"):
                self.pos += 1
            elif c == "#":
                while self.pos < n and text[self.pos] not in "\r\n":
                    self.pos += 1
            else:
                return

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and _is_word(self.text[self.pos]):
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected a rule name (letters, digits and '-')")
        return self.text[start : self.pos]

    def integer(self) -> int:
        start = self.pos
        while self.peek().isascii() and self.peek().isdigit():
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected a number in a {m,n} repetition")
        return int(self.text[start : self.pos])

    def char(self) -> None:
        """One (possibly escaped) character inside a literal or a character class."""
        c = self.peek()
        if not c:
            raise self.fail("unexpected end of grammar")
        self.pos += 1
        if c != "\\":
            return
        e = self.peek()
        self.pos += 1
        if e in _HEX_ESCAPES:
            digits = self.text[self.pos : self.pos + _HEX_ESCAPES[e]]
            if len(digits) != _HEX_ESCAPES[e] or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"\\{e} needs {_HEX_ESCAPES[e]} hex digits")
            if int(digits, 16) > 0x10FFFF:
                raise self.fail(f"\\{e}{digits} is beyond the last Unicode code point")
            self.pos += len(digits)
        elif e not in _ESCAPES:
            raise self.fail(f"unknown escape '\\{e}'" if e else "unexpected end of grammar")

    # --- grammar --------------------------------------------------------------------------------

    def parse(self) -> dict[str, list[list[_Element]]]:
        self.space(True)
        while self.pos < len(self.text):
            self.rule = ""
            name = self.name()
            self.rule = name
            self.space(False)
            if not self.text.startswith("::=", self.pos):
                raise self.fail("expected '::=' after the rule name")
            self.pos += 3
            self.space(True)
            alternates = self.alternates(0)
            if name in self.rules:
                raise self.fail(f"rule '{name}' is defined twice")
            self.rules[name] = alternates
            if len(self.rules) > MAX_RULES:
                raise self.fail(f"more than {MAX_RULES} rules")
            if self.peek() == "\r":
                self.pos += 1
            if self.peek() == "\n":
                self.pos += 1
            elif self.pos < len(self.text):
                raise self.fail("expected the end of the line after the rule")
            self.space(True)
        return self.rules

    def alternates(self, depth: int) -> list[list[_Element]]:
        alternates = [self.sequence(depth)]
        while self.peek() == "|":
            self.pos += 1
            self.space(True)
            alternates.append(self.sequence(depth))
        return alternates

    def sequence(self, depth: int) -> list[_Element]:
        newline_ok = depth > 0
        items: list[_Element] = []
        while True:
            c = self.peek()
            if not c:
                return items
            if c == '"':
                self.pos += 1
                start = self.pos
                while self.peek() != '"':
                    if not self.peek():
                        raise self.fail("a string literal is not closed")
                    self.char()
                items.append(_Element("literal", empty_literal=self.pos == start))
                self.pos += 1
            elif c == "[":
                self.pos += 1
                if self.peek() == "^":
                    self.pos += 1
                while self.peek() != "]":
                    if not self.peek():
                        raise self.fail("a character class is not closed")
                    self.char()
                    if self.peek() == "-" and self.text[self.pos + 1 : self.pos + 2] not in ("]", ""):
                        self.pos += 1
                        self.char()
                self.pos += 1
                items.append(_Element("class"))
            elif c == "<" or c == "!":
                if c == "!":
                    self.pos += 1
                    if self.peek() != "<":
                        raise self.fail("'!' must be followed by a token reference '<...>'")
                end = self.text.find(">", self.pos)
                if end < 0:
                    raise self.fail("a token reference '<...>' is not closed")
                inner = self.text[self.pos + 1 : end]
                token_id = None
                if inner.startswith("["):
                    if not (inner.endswith("]") and inner[1:-1].isascii() and inner[1:-1].isdigit()):
                        raise self.fail("a token id reference is written <[123]>")
                    token_id = int(inner[1:-1])
                self.pos = end + 1
                if token_id is not None:
                    self.token_ids.append(token_id)
                items.append(_Element("token", token_id=token_id))
            elif _is_word(c):
                items.append(_Element("ref", ref=self.name()))
            elif c == "(":
                if depth + 1 > MAX_NESTING:
                    raise self.fail(f"parentheses nest deeper than {MAX_NESTING} levels")
                self.pos += 1
                self.space(True)
                group = self.alternates(depth + 1)
                if self.peek() != ")":
                    raise self.fail("expected ')'")
                self.pos += 1
                items.append(_Element("group", alternates=group))
            elif c == ".":
                self.pos += 1
                items.append(_Element("any"))
            elif c in "*+?":
                if not items:
                    raise self.fail(f"'{c}' must follow an element")
                self.pos += 1
                if c != "+":
                    items[-1].min_repeat = 0
            elif c == "{":
                if not items:
                    raise self.fail("'{' must follow an element")
                self.pos += 1
                self.space(False)
                low = self.integer()
                high: int | None = low
                self.space(False)
                if self.peek() == ",":
                    self.pos += 1
                    self.space(False)
                    high = None if self.peek() == "}" else self.integer()
                    self.space(False)
                if self.peek() != "}":
                    raise self.fail("expected '}' to close the repetition")
                self.pos += 1
                if max(low, high or 0) > MAX_REPETITIONS:
                    raise self.fail(f"more than {MAX_REPETITIONS} repetitions")
                if high is not None and high < low:
                    raise self.fail(f"repetition {{{low},{high}}} has its maximum below its minimum")
                items[-1].min_repeat = min(items[-1].min_repeat, low)
            else:
                return items
            self.space(newline_ok)


def _refs(alternates: list[list[_Element]]) -> list[str]:
    out: list[str] = []
    for sequence in alternates:
        for item in sequence:
            if item.ref is not None:
                out.append(item.ref)
            out += _refs(item.alternates)
    return out


def _matches_empty(item: _Element, nullable: set[str]) -> bool:
    """Whether the element can match no input at all, given the rules known to do so."""
    if item.min_repeat == 0:
        return True
    if item.kind == "literal":
        return item.empty_literal
    if item.kind == "ref":
        return item.ref in nullable
    if item.kind == "group":
        return any(all(_matches_empty(i, nullable) for i in seq) for seq in item.alternates)
    return False


def _nullable_rules(rules: dict[str, list[list[_Element]]]) -> set[str]:
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, alternates in rules.items():
            if name not in nullable and any(
                all(_matches_empty(i, nullable) for i in seq) for seq in alternates
            ):
                nullable.add(name)
                changed = True
    return nullable


def _left_edges(alternates: list[list[_Element]], nullable: set[str]) -> set[str]:
    """Rules that can be expanded first, without consuming input, from these alternates."""
    edges: set[str] = set()
    for sequence in alternates:
        for item in sequence:
            if item.ref is not None:
                edges.add(item.ref)
            elif item.kind == "group":
                edges |= _left_edges(item.alternates, nullable)
            if not _matches_empty(item, nullable):
                break
    return edges


def _left_recursive(rules: dict[str, list[list[_Element]]]) -> str | None:
    nullable = _nullable_rules(rules)
    graph = {name: _left_edges(alts, nullable) for name, alts in rules.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in graph:
        if state.get(start):
            continue
        stack = [(start, iter(graph[start]))]
        state[start] = 1
        while stack:
            node, edges = stack[-1]
            nxt = next(edges, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return nxt
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
    return None


def check_grammar(text: str, root: str = "root") -> list[int]:
    """Raises a 400 naming the problem unless llama.cpp can safely use ``text`` as a grammar.

    Returns the token ids the grammar names (``<[id]>``): the caller checks them against its
    vocabulary, as llama.cpp aborts the process on an id past its end.
    """
    if not isinstance(text, str) or not text.strip():
        raise GrammarError("The grammar is empty; give GBNF rules, starting with 'root ::= ...'.")
    if len(text) > MAX_GRAMMAR_CHARS:
        raise GrammarError(
            f"The grammar has {len(text)} characters; at most {MAX_GRAMMAR_CHARS} are accepted."
        )
    if "\x00" in text:
        raise GrammarError("The grammar contains a NUL character.")
    parser = _Parser(text)
    rules = parser.parse()
    if root not in rules:
        defined = ", ".join(sorted(rules)[:10]) or "none"
        raise GrammarError(
            f"The grammar has no '{root}' rule (defined: {defined}); generation starts from '{root} ::= ...'."
        )
    for name, alternates in rules.items():
        undefined = sorted({r for r in _refs(alternates) if r not in rules})
        if undefined:
            raise GrammarError(
                f"Invalid grammar: rule '{name}' refers to undefined rule(s) {', '.join(undefined)}."
            )
    looped = _left_recursive(rules)
    if looped is not None:
        raise GrammarError(
            f"Invalid grammar: rule '{looped}' is left-recursive (it can reach itself before "
            "consuming any input), which llama.cpp does not support; rewrite it with repetition (*, +)."
        )
    return parser.token_ids
