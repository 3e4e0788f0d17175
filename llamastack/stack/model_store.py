"""The models `llama-stack model download` fetches from the Hugging Face hub, and where they are kept.

One table (``DOWNLOADABLE``) says which hub repo and files stand for each catalog model. Downloads go to
the models dir: ``LLAMA_STACK_MODELS_DIR``, else ``$LLAMA_STACK_STATE_DIR/models``, else
``~/.llamastack/models``; one folder per model, named by its descriptor. A model counts as downloaded
only once its manifest (``download.json``, written after every file's checksum matched) exists, so an
interrupted download is never served. Stdlib only: the server imports this to resolve model names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

MANIFEST = "download.json"
DEFAULT_MODELS_DIR = "~/.llamastack/models"


@dataclass(frozen=True)
class DownloadableModel:
    name: str  # the llama-models descriptor, e.g. Llama3.2-1B-Instruct
    repo: str  # the hub repo the files come from
    # A GGUF model is one file; a safetensors model is a folder: the repo's files matching these globs.
    files: tuple[str, ...]
    format: Literal["gguf", "safetensors"]
    meta_repo: str  # Meta's own repo, accepted as another name for the model
    gated: bool = False  # the repo needs HF_TOKEN and an accepted licence

    @property
    def is_folder(self) -> bool:
        return self.format == "safetensors"

    def names(self) -> tuple[str, ...]:
        return (self.name, self.meta_repo, self.meta_repo.rsplit("/", 1)[-1])


# GGUFs: Q4_K_M quantizations (the usual balance of size and quality for llama.cpp on a CPU).
DOWNLOADABLE: tuple[DownloadableModel, ...] = (
    DownloadableModel(
        name="Llama3.2-1B-Instruct",
        repo="bartowski/Llama-3.2-1B-Instruct-GGUF",
        files=("Llama-3.2-1B-Instruct-Q4_K_M.gguf",),
        format="gguf",
        meta_repo="meta-llama/Llama-3.2-1B-Instruct",
    ),
    DownloadableModel(
        name="Llama3.2-3B-Instruct",
        repo="bartowski/Llama-3.2-3B-Instruct-GGUF",
        files=("Llama-3.2-3B-Instruct-Q4_K_M.gguf",),
        format="gguf",
        meta_repo="meta-llama/Llama-3.2-3B-Instruct",
    ),
    DownloadableModel(
        name="Llama-Guard-3-1B",
        repo="bartowski/Llama-Guard-3-1B-GGUF",
        files=("Llama-Guard-3-1B-Q4_K_M.gguf",),
        format="gguf",
        meta_repo="meta-llama/Llama-Guard-3-1B",
    ),
    DownloadableModel(
        name="Llama3.2-11B-Vision-Instruct",
        repo="meta-llama/Llama-3.2-11B-Vision-Instruct",
        # The transformers layout; the repo's original/ folder repeats the weights in Meta's format.
        files=("*.json", "*.safetensors"),
        format="safetensors",
        meta_repo="meta-llama/Llama-3.2-11B-Vision-Instruct",
        gated=True,
    ),
)


def find_downloadable(name: str) -> DownloadableModel | None:
    """The table's model called ``name`` (descriptor, Meta repo or its last part; any case)."""
    wanted = name.strip().lower()
    for model in DOWNLOADABLE:
        if wanted in (n.lower() for n in model.names()):
            return model
    return None


def models_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("LLAMA_STACK_MODELS_DIR"):
        return Path(env["LLAMA_STACK_MODELS_DIR"]).expanduser()
    if env.get("LLAMA_STACK_STATE_DIR"):
        return Path(env["LLAMA_STACK_STATE_DIR"]).expanduser() / "models"
    return Path(DEFAULT_MODELS_DIR).expanduser()


@dataclass(frozen=True)
class DownloadedModel:
    name: str
    path: Path  # the GGUF file, or the folder of a safetensors model
    size: int  # bytes of every downloaded file
    repo: str
    revision: str


def model_folder(name: str, env: Mapping[str, str] | None = None) -> Path:
    return models_dir(env) / name


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def _read(folder: Path) -> DownloadedModel | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files: dict[str, Any] = data["files"]
        path = (folder / data["path"]).resolve()
        size = sum(int(f["size"]) for f in files.values())
        if not path.is_relative_to(folder.resolve()):
            return None  # a manifest pointing outside its folder is not ours
        if not all((folder / name).is_file() for name in files):
            return None
        return DownloadedModel(str(data["model"]), path, size, str(data["repo"]), str(data["revision"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def downloaded(name: str, env: Mapping[str, str] | None = None) -> DownloadedModel | None:
    """The complete download of a table model, or None."""
    model = find_downloadable(name)
    return _read(model_folder(model.name, env)) if model else None


def list_downloaded(env: Mapping[str, str] | None = None) -> list[DownloadedModel]:
    root = models_dir(env)
    if not root.is_dir():
        return []
    found = (_read(folder) for folder in sorted(root.iterdir()) if folder.is_dir())
    return [m for m in found if m is not None]
