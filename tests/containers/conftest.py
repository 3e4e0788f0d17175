"""What the container tests share: one Docker engine (and the python:3.11-slim base) per session,
a clean clone of the committed tree to build from, and waiting for a container to serve.

scripts/docker-engine installs and starts the engine when none answers. Locally, a machine that
cannot run one skips these tests and says why; in CI (CI=true) a failed set-up fails the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT / "scripts" / "docker-engine"
CA_DIR = Path("/usr/local/share/ca-certificates")


def setup_failed(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true"):
        pytest.fail(f"Docker engine set-up failed in CI: {message}", pytrace=False)
    pytest.skip(f"no Docker engine could be started here: {message}")


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """A client of a running engine that has the base image; a daemon started here is stopped here."""
    try:
        import docker
    except ImportError:
        setup_failed("the docker Python package is missing (`scripts/install local,dev` installs it)")
    started = subprocess.run([str(ENGINE_SCRIPT), "start"], capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        setup_failed(started.stderr.strip()[-2000:])
    own_pid = int(started.stdout.strip()) if started.stdout.strip().isdigit() else None
    try:
        base = subprocess.run([str(ENGINE_SCRIPT), "base"], capture_output=True, text=True, timeout=900)
        if base.returncode != 0:
            setup_failed(base.stderr.strip()[-2000:])
        yield docker.from_env(timeout=600)
    finally:
        if own_pid is not None:
            os.kill(own_pid, signal.SIGTERM)  # only the daemon this session started


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of the committed tree (no venv, caches or local state), one per module: a
    module may edit its clone to time a rebuild."""
    clone = tmp_path_factory.mktemp("checkout") / "llamastack"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    return clone


def build_distribution(
    checkout: Path, distro: str, tag: str, context: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`llama-stack build --distro DISTRO --image-type container`, run by the clone's own code (the
    tests' editable install must not stand in for it), with this machine's CA certificates."""
    certs = ("--ca-certs", str(CA_DIR)) if CA_DIR.is_dir() else ()
    return subprocess.run(
        [
            sys.executable, "-m", "llamastack.cli.main", "build", "--distro", distro,
            "--image-type", "container", "--image-name", tag, "--context-dir", str(context), *certs, *extra,
        ],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        timeout=1500,
    )  # fmt: skip


def wait_healthy(container: Any, base_url: str, timeout: float = 180) -> None:
    """Until the published port answers /v1/health; fails with the container's log if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited:\n{container.logs().decode()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not healthy in {timeout} s:\n{container.logs().decode()[-4000:]}")
