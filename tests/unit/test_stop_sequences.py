from __future__ import annotations

import pytest

from llamastack.providers.inference.llama_cpp.engine import _hold_back


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
    assert _hold_back(text, stops) == held
