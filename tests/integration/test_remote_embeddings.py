"""Embeddings from a real remote engine: llama_cpp.server with --embedding, serving SmolLM2 from a
copy of its GGUF that names mean pooling (so it answers one vector per input, as embedding engines
do), reached through the `remote` distribution's remote::llama-cpp-server. The vectors are the
engine's own, through both official clients, and a vector db built on them answers queries."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient
from pooled_gguf import with_pooling

from conftest import ENGINE_MODEL, Engine, RunningServer, smollm2_path, start_llama_cpp_engine, start_server

pytestmark = pytest.mark.integration

EMBED_MODEL = "smol-embed"
DIMENSION = 576  # SmolLM2-135M's hidden size
TEXTS = [
    "The cat sat on the mat.",
    "Paris is the capital of France.",
    "Photosynthesis turns light into chemical energy.",
]


@pytest.fixture(scope="module")
def pooled_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    work = tmp_path_factory.mktemp("pooled-engine")
    gguf = with_pooling(Path(smollm2_path()), work / "SmolLM2-135M-Instruct.mean-pooled.gguf")
    engine = start_llama_cpp_engine(work, embedding=True, model_path=str(gguf))
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pooled_engine: Engine) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("remote-embeddings"),
        config="remote",
        env={"LLAMA_CPP_SERVER_URL": pooled_engine.url, "INFERENCE_MODEL": ENGINE_MODEL},
    )
    client = LlamaStackClient(base_url=running.base_url)
    client.models.register(
        model_id=EMBED_MODEL,
        provider_id="llama-cpp-server",
        provider_model_id=ENGINE_MODEL,
        model_type="embedding",
    )
    yield running
    running.stop()


def _direct(engine: Engine, texts: list[str]) -> list[list[float]]:
    answer = httpx.post(
        f"{engine.url}/embeddings", json={"model": ENGINE_MODEL, "input": texts}, timeout=60
    ).json()
    return [d["embedding"] for d in sorted(answer["data"], key=lambda d: d["index"])]


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def test_the_registered_model_reports_the_engines_dimension(server: RunningServer) -> None:
    models = {m.identifier: m for m in LlamaStackClient(base_url=server.base_url).models.list()}
    assert models[EMBED_MODEL].model_type == "embedding"
    assert models[EMBED_MODEL].metadata["embedding_dimension"] == DIMENSION  # probed on the engine


def test_both_clients_get_the_engines_own_vectors(server: RunningServer, pooled_engine: Engine) -> None:
    expected = _direct(pooled_engine, TEXTS)
    assert len(expected) == len(TEXTS) and all(len(v) == DIMENSION for v in expected)

    native = LlamaStackClient(base_url=server.base_url).inference.embeddings(
        model_id=EMBED_MODEL, contents=TEXTS
    )
    assert all(_close(got, want) for got, want in zip(native.embeddings, expected, strict=True))

    compat = openai.OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key="none", max_retries=0)
    answer = compat.embeddings.create(model=EMBED_MODEL, input=TEXTS)
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert all(_close(d.embedding, want) for d, want in zip(answer.data, expected, strict=True))
    assert answer.model == EMBED_MODEL


def test_a_vector_db_on_remote_embeddings_finds_each_text(server: RunningServer) -> None:
    client = LlamaStackClient(base_url=server.base_url)
    client.vector_dbs.register(
        vector_db_id="remote-vectors", embedding_model=EMBED_MODEL, embedding_dimension=DIMENSION
    )
    client.vector_io.insert(
        vector_db_id="remote-vectors",
        chunks=[{"content": t, "metadata": {"document_id": f"doc-{i}"}} for i, t in enumerate(TEXTS)],
    )
    for i, text in enumerate(TEXTS):
        found = client.vector_io.query(vector_db_id="remote-vectors", query=text, params={"max_chunks": 3})
        assert found.chunks[0].metadata["document_id"] == f"doc-{i}"  # its own vector: the nearest
        assert list(found.scores) == sorted(found.scores, reverse=True)


def test_a_vector_db_whose_dimension_disagrees_with_the_engine_is_refused(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/vector-dbs",
        json={"vector_db_id": "wrong-size", "embedding_model": EMBED_MODEL, "embedding_dimension": 384},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert "576" in response.json()["detail"]
