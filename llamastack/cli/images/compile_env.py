"""The environment pip compiles source-only packages in (llama-cpp-python, for this machine).

llama.cpp compiles with ``-march=native``; on a CPU with AMX that brings in ggml's AMX kernels, which
crash the process on some such machines (llama.cpp issue 20824). They are left out, as scripts/install
does; a build that has them anyway is handled at model load (providers/inference/llama_cpp/cpu_kernels.py).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess

NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def compile_env() -> dict[str, str]:
    env = dict(os.environ)
    if platform.machine() != "x86_64" or not _compiler_takes(NO_AMX, env.get("CC", "cc")):
        return env
    for name in ("CFLAGS", "CXXFLAGS"):
        env[name] = f"{env.get(name, '')} {NO_AMX}".strip()
    return env


@functools.cache  # one probe of the compiler per process: a build runs pip several times
def _compiler_takes(flags: str, compiler: str) -> bool:
    if shutil.which(compiler) is None:
        return False
    done = subprocess.run(
        [compiler, *flags.split(), "-E", "-"], input=b"", capture_output=True, check=False, timeout=30
    )
    return done.returncode == 0
