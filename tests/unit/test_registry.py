from __future__ import annotations

import importlib

import pytest
from pydantic import BaseModel

from llamastack.providers.registry import PROVIDERS, get_spec, providers_for
from llamastack.stack.datatypes import Api


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda s: s.provider_type)
def test_every_provider_resolves(spec) -> None:
    module = importlib.import_module(spec.module)
    assert callable(module.get_provider_impl)
    mod_name, _, cls_name = spec.config_class.partition(":")
    config_class = getattr(importlib.import_module(mod_name), cls_name)
    assert issubclass(config_class, BaseModel)
    config_class.model_validate({})  # defaults alone are a valid config
    assert isinstance(config_class.sample_run_config(), dict)
    assert spec.provider_type.split("::")[0] in ("inline", "remote")


def test_provider_types_are_unique_per_api() -> None:
    keys = [(s.api, s.provider_type) for s in PROVIDERS]
    assert len(keys) == len(set(keys))


def test_lookup() -> None:
    assert get_spec(Api.inference, "inline::llama-cpp").module.endswith("llama_cpp")
    assert get_spec(Api.inference, "inline::nope") is None
    assert {s.provider_type for s in providers_for(Api.inference)} >= {
        "inline::llama-cpp",
        "inline::sentence-transformers",
    }


def test_importing_a_provider_package_does_not_import_its_engine() -> None:
    """Heavy engines load in the factory, so listing providers and --help stay fast."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import llamastack.providers.inference.llama_cpp\n"
        "import llamastack.providers.inference.sentence_transformers\n"
        "print(any(m in sys.modules for m in ('llama_cpp', 'numpy', 'torch', 'tokenizers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
