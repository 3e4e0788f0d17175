"""Builds the onnx graphs of a distribution's embedding models before its first start.

The server builds a missing graph itself (about 1.5 s of its start); `scripts/install` runs this right
after installing the bundled models, so that even a first start with a fresh state dir only reads the
graph from the per-user cache the run configs name (`config.default_cache_dir`). It prepares exactly
what `llama-stack run` would load with the same environment (models, backend, quantize, cache_dir).

    python -m llamastack.providers.inference.sentence_transformers.prepare [DISTRIBUTION | RUN_YAML]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from llamastack.stack.config import RunConfig, load_run_config
from llamastack.stack.errors import StackError
from llamastack.stack.model_paths import resolve_model_path

from .config import SentenceTransformersConfig

PROVIDER_TYPE = "inline::sentence-transformers"
log = logging.getLogger(__name__)


def prepare(run_config: RunConfig) -> list[Path]:
    """Builds (or finds) the cached graph of every embedding model this provider serves in the run
    config; returns the folders prepared. Models it cannot prepare are logged and left to the server."""
    from .numpy_bert import UnsupportedFolder
    from .onnx_bert import OnnxBertEncoder, onnx_available

    prepared = []
    for entry in run_config.providers.get("inference", []):
        if entry.provider_type != PROVIDER_TYPE or not entry.provider_id:
            continue
        config = SentenceTransformersConfig.model_validate(entry.config)
        if config.backend not in ("auto", "onnx") or not config.cache_dir or not onnx_available():
            continue  # nothing derived to keep
        for model in run_config.models:
            if not model.model_id or model.provider_id != entry.provider_id:
                continue
            try:
                folder = resolve_model_path(model.provider_model_id or model.model_id, expect_dir=True)
                OnnxBertEncoder(
                    folder, quantize=config.quantize, cache_dir=Path(config.cache_dir).expanduser()
                )
            except (StackError, UnsupportedFolder) as exc:
                log.warning("Not preparing '%s': %s", model.model_id, getattr(exc, "detail", exc))
                continue
            prepared.append(folder)
    return prepared


def main(argv: list[str] | None = None) -> int:
    from llamastack.distributions import available

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="local", help="A distribution name or a run.yaml.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = available().get(args.config) or Path(args.config)
    try:
        folders = prepare(load_run_config(path))
    except StackError as exc:
        print(f"Error: {exc.detail}", file=sys.stderr)
        return 1
    print(f"Prepared {len(folders)} embedding model(s) of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
