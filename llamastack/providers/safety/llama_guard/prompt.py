"""Llama Guard 3's classification prompt and the parsing of its verdict.

The model classifies the LAST message of a conversation against a hazard taxonomy. The whole
prompt goes to the model as one user message through its own chat template; 11B-Vision gets the
most recent user image in that message too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Variant = Literal["1B", "8B", "11B-Vision"]

CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex Crimes",
    "S4": "Child Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",  # 8B only
}

_VARIANT = re.compile(r"guard[-_ ]?3[-_ ]?(?P<size>1b|8b|11b)", re.IGNORECASE)


def variant_of(*names: str | None) -> Variant:
    """The Llama Guard 3 variant a model name denotes; 8B (all 14 categories) when unknown."""
    for name in names:
        if name and (match := _VARIANT.search(name)):
            return {"1b": "1B", "8b": "8B", "11b": "11B-Vision"}[match.group("size").lower()]  # type: ignore[return-value]
    return "8B"


@dataclass(frozen=True)
class Policy:
    """The categories a shield enforces, as the model will see them."""

    variant: Variant = "8B"
    excluded: frozenset[str] = frozenset()
    descriptions: dict[str, str] = field(default_factory=dict)
    custom: tuple[tuple[str, str | None], ...] = ()  # (name, description)

    def categories(self) -> list[tuple[str, str, str | None]]:
        """(code, name, description) in prompt order, excluded ones left out."""
        codes = [c for c in CATEGORIES if self.variant == "8B" or c != "S14"]
        out = [(c, CATEGORIES[c], self.descriptions.get(c)) for c in codes]
        next_code = len(codes) + 1
        for i, (name, description) in enumerate(self.custom):
            out.append((f"S{next_code + i}", name, description))
        return [entry for entry in out if entry[0] not in self.excluded]

    def known_codes(self) -> set[str]:
        codes = {c for c in CATEGORIES if self.variant == "8B" or c != "S14"}
        return codes | {f"S{len(codes) + 1 + i}" for i in range(len(self.custom))}


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str


def build_prompt(turns: list[Turn], policy: Policy) -> str:
    role = "Agent" if turns[-1].role == "assistant" else "User"
    categories = "\n".join(
        f"{code}: {name}." + (f"\n{description}" if description else "")
        for code, name, description in policy.categories()
    )
    conversation = "\n\n".join(f"{'Agent' if t.role == 'assistant' else 'User'}: {t.text}" for t in turns)
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according our safety "
        "policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def verdict_grammar(policy: Policy) -> str:
    """GBNF allowing only 'safe' or 'unsafe' + a newline + known codes, comma-separated."""
    codes = " | ".join(f'"{c}"' for c in sorted(policy.known_codes(), key=lambda c: -len(c)))
    return f'root ::= "safe" | "unsafe\\n" code ("," code)*\ncode ::= {codes}'


class MalformedVerdictError(ValueError):
    pass


@dataclass(frozen=True)
class Verdict:
    codes: tuple[str, ...]  # empty: safe

    @property
    def safe(self) -> bool:
        return not self.codes


_UNSAFE = re.compile(r"^unsafe\s*\n\s*(?P<codes>S\d{1,2}(?:\s*,\s*S\d{1,2})*)\s*$")


def parse_verdict(output: str, policy: Policy) -> Verdict:
    """'safe' → safe; 'unsafe\\nS1,S10' → those codes minus excluded ones; anything else raises."""
    text = output.strip()
    if text == "safe":
        return Verdict(())
    match = _UNSAFE.match(text)
    if match is None:
        raise MalformedVerdictError(f"expected 'safe' or 'unsafe' and category codes, got {output!r}")
    codes = [c.strip() for c in match.group("codes").split(",")]
    unknown = [c for c in codes if c not in policy.known_codes()]
    if unknown:
        raise MalformedVerdictError(f"unknown category codes {unknown} in {output!r}")
    return Verdict(tuple(dict.fromkeys(c for c in codes if c not in policy.excluded)))
