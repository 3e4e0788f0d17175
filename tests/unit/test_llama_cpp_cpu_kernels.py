"""llama.cpp's AMX kernels never hold a model's weights unless asked for: they crash the process on the
first prompt on some AMX CPUs (llama.cpp issue 20824; seen on this project's test machines)."""

from __future__ import annotations

import platform
from pathlib import Path
from types import ModuleType

import llama_cpp
import pytest

from llamastack.providers.inference.llama_cpp import cpu_kernels
from llamastack.providers.inference.llama_cpp.config import LlamaCppConfig
from tests.llama_engine import GGUF, generated, loaded


def _cpu_has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_the_build_is_read_from_llama_cpp_system_info() -> None:
    cpu_kernels.build_has_amx.cache_clear()
    try:
        with_amx, without = ModuleType("with_amx"), ModuleType("without")
        with_amx.llama_print_system_info = lambda: b"CPU : AVX2 = 1 | AMX_INT8 = 1 | "  # type: ignore[attr-defined]
        without.llama_print_system_info = lambda: b"CPU : AVX2 = 1 | AVX512 = 1 | "  # type: ignore[attr-defined]
        assert cpu_kernels.build_has_amx(with_amx)
        assert not cpu_kernels.build_has_amx(without)
    finally:
        cpu_kernels.build_has_amx.cache_clear()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="AMX is an x86 feature")
def test_the_installed_llama_cpp_has_no_amx_kernels() -> None:
    """scripts/install compiles llama.cpp with -mno-amx-*: on a CPU with AMX a native build has the
    kernels otherwise (on one without, it never has them)."""
    info = llama_cpp.llama_print_system_info()
    assert b"AMX_INT8 = 1" not in info, (
        f"llama.cpp was compiled with its AMX kernels (cpu has AMX: {_cpu_has_amx()}); run scripts/install"
    )


async def test_a_build_with_amx_loads_weights_without_extra_buffer_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu_kernels, "build_has_amx", lambda _module: True)
    with loaded(LlamaCppConfig(n_ctx=256, max_parallel=1), grow=False) as engine:
        assert engine.llm.model_params.use_extra_bufts is False
        # The model still answers, and the defaults are back for whatever loads next.
        assert await generated(engine, "The capital of France is", 4)
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_amx_on_or_a_build_without_it_keeps_llama_cpp_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_kernels, "build_has_amx", lambda _module: True)
    with cpu_kernels.weights_without_amx(llama_cpp, allow_amx=True):
        assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True
    monkeypatch.setattr(cpu_kernels, "build_has_amx", lambda _module: False)
    with cpu_kernels.weights_without_amx(llama_cpp, allow_amx=False):
        llm = llama_cpp.Llama(model_path=str(GGUF), n_ctx=64, verbose=False)
    assert llm.model_params.use_extra_bufts is True
    llm.close()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="AMX is an x86 feature")
def test_image_and_venv_builds_compile_llama_cpp_without_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    from llamastack.cli.images.compile_env import compile_env

    monkeypatch.setenv("CFLAGS", "-O2")
    monkeypatch.delenv("CXXFLAGS", raising=False)
    env = compile_env()
    assert env["CFLAGS"].split() == ["-O2", "-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"]
    assert "-mno-amx-int8" in env["CXXFLAGS"].split()
    monkeypatch.setenv("CC", "no-such-compiler")
    assert compile_env()["CFLAGS"] == "-O2"  # flags only for a compiler that takes them
