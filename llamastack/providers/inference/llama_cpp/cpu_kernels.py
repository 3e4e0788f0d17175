"""Which of llama.cpp's CPU weight layouts a model is loaded into: AMX only when asked for.

llama-cpp-python compiles llama.cpp for the machine it is installed on (``-march=native``). On a CPU
with AMX (Xeon Sapphire Rapids and later) that build includes ggml's AMX matrix kernels, and llama.cpp
moves a model's quantized weights into an AMX buffer at load. In the version pinned here those kernels
crash the process (SIGSEGV in ``ggml_backend_amx_mul_mat``) on the first prompt on some such machines,
with SmolLM2's Q4_1 among others; upstream it is llama.cpp issue 20824, open without a fix. A process
crash is what this server must never allow, so:

- ``scripts/install`` compiles llama.cpp without AMX (``-mno-amx-*``): then there is nothing to avoid;
- a build that has AMX anyway (llama-cpp-python installed another way) loads weights without llama.cpp's
  extra buffer types (``use_extra_bufts``: the AMX one, and repacked layouts, which the other CPU
  kernels use for a few quantizations such as Q4_0), unless the provider's ``amx`` setting is on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

_patching = threading.Lock()


@functools.cache
def build_has_amx(llama_cpp: ModuleType) -> bool:
    """Whether the installed llama.cpp was compiled with its AMX kernels (a compile-time property)."""
    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    return "AMX_INT8 = 1" in text


@contextlib.contextmanager
def weights_without_amx(llama_cpp: ModuleType, *, allow_amx: bool) -> Iterator[None]:
    """Around a ``llama_cpp.Llama(...)`` construction: its model loads without extra buffer types
    when the build has AMX kernels and they were not asked for. ``Llama`` takes its model parameters
    from ``llama_model_default_params`` and exposes no setting for these, so that function answers
    with ``use_extra_bufts`` off for the duration (serialized: loads in other threads wait)."""
    if allow_amx or not build_has_amx(llama_cpp):
        yield
        return
    low = llama_cpp.llama_cpp
    with _patching:
        defaults = low.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        low.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            low.llama_model_default_params = defaults
    _warn_once()


@functools.cache
def _warn_once() -> None:
    log.warning(
        "This llama.cpp build includes its AMX kernels, which crash on some CPUs (llama.cpp issue "
        "20824): models load without them (and without repacked weight layouts). To get those "
        "back, reinstall llama-cpp-python without AMX (scripts/install does: CFLAGS and CXXFLAGS "
        "'-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'), or set the provider's 'amx: true' on a "
        "machine where they work."
    )
