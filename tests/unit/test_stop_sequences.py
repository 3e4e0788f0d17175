from __future__ import annotations

import pytest

from llamastack.providers.utils.local_generation import hold_back


@pytest.mark.parametrize(
    ("text", "stops", "held"),
    [
        ("Hello wor", ["world"], 3),
        ("Hello", ["world"], 0),
        ("abc<|", ["<|end|>"], 2),
        ("abc<", ["<|end|>", "<x>"], 1),
        ("", ["x"], 0),
        ("aaa", ["aab"], 2),
    ],
)
def test_hold_back_keeps_only_what_could_start_a_stop(text: str, stops: list[str], held: int) -> None:
    assert hold_back(text, stops) == held


def test_json_grammar_strings_exclude_raw_control_characters() -> None:
    """A JSON string may not hold a raw newline; the grammar must not let the model write one."""
    from llamastack.providers.inference.llama_cpp.engine import _json_grammar

    grammar = _json_grammar(
        '{"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}'
    )
    char_rule = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert "\\x00-\\x1F" in char_rule
