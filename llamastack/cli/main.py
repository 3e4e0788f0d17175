"""The `llama-stack` command. Subcommands import what they need only when they run, so --help is instant."""

from __future__ import annotations

import argparse
import sys

from . import _commands, model, model_refresh


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-stack",
        description="Build, configure and run Llama Stack distributions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="Start the server for a distribution or a run.yaml.")
    run.add_argument("config", help="A distribution name (see list-distributions) or a path to a run.yaml.")
    run.add_argument("--port", type=int, help="Port to listen on (default: the run config's, 8321).")
    run.add_argument(
        "--host",
        help="Address to bind (default: the run config's, 127.0.0.1: this machine only). "
        "0.0.0.0 exposes the server to other machines; set API keys first (LLAMA_STACK_API_KEYS).",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Set an environment variable for the run config; repeatable.",
    )
    run.add_argument("--access-log", action="store_true", help="Log every request.")
    run.add_argument(
        "--image-type",
        choices=("venv", "container"),
        help="container: CONFIG is an image from `llama-stack build --image-type container`, "
        "served with the Docker engine on --host (127.0.0.1) and --port (8321).",
    )
    run.set_defaults(func=_commands.run)

    build = sub.add_parser(
        "build",
        help="Make a venv or a container image for a distribution, or print its packages.",
        description="Installs exactly the packages the named providers need (from the provider registry).",
    )
    what = build.add_mutually_exclusive_group()
    what.add_argument("--distro", "--template", help="A bundled distribution (see list-distributions).")
    what.add_argument("--config", help="A run.yaml, or an upstream-style build.yaml (distribution_spec).")
    what.add_argument(
        "--providers", help="api=provider_type items, comma-separated: inference=inline::llama-cpp,..."
    )
    build.add_argument("--image-type", choices=("venv", "container"), default="venv")
    build.add_argument(
        "--image-name", help="venv: a name (under ~/.llamastack/venvs) or a path; container: the image tag."
    )
    build.add_argument(
        "--print-deps",
        "--list-deps",
        action="store_true",
        help="Print the pip requirements, one a line, and build nothing.",
    )
    build.add_argument(
        "--without", action="append", default=[], metavar="TYPES", help="Leave out these provider types."
    )
    build.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="TYPES",
        help="Keep providers or packages that images leave out for their size (e.g. inline::chromadb, "
        "onnxruntime).",
    )
    build.add_argument("--base-image", default="python:3.11-slim", help="container: the FROM image.")
    build.add_argument(
        "--ca-certs",
        action="append",
        default=[],
        metavar="PATH",
        help="container: extra CA certificates (a .crt/.pem file or a folder), for pip behind a TLS proxy.",
    )
    build.add_argument(
        "--context-dir", help="container: where to write the build context (~/.llamastack/builds/NAME)."
    )
    build.set_defaults(func=_commands.build)

    apis = sub.add_parser("list-apis", help="List the APIs the stack serves.")
    apis.set_defaults(func=_commands.list_apis)

    providers = sub.add_parser("list-providers", help="List the providers available for each API.")
    providers.add_argument("api", nargs="?", help="Only this API (e.g. inference).")
    providers.set_defaults(func=_commands.list_providers)

    dists = sub.add_parser("list-distributions", help="List the bundled distributions.")
    dists.set_defaults(func=_commands.list_distributions)

    model_parser = sub.add_parser(
        "model", help="The Llama model catalog, prompt formats, downloads; a server's engine models."
    )
    model_parser.set_defaults(func=lambda _args: _help(model_parser))
    model_sub = model_parser.add_subparsers(dest="model_command", metavar="COMMAND")
    models = model_sub.add_parser("list", help="List Llama models (Llama 3.1/3.2/3.3, Llama Guard 3).")
    models.add_argument("--all", action="store_true", help="Every model llama-models knows.")
    models.add_argument(
        "--downloaded", action="store_true", help="The models `model download` fetched: size and path."
    )
    models.set_defaults(func=model.list_models)
    get = model_sub.add_parser(
        "download",
        help="Download a model from the Hugging Face hub (Llama 3.2 1B/3B Instruct and Llama Guard 3 1B "
        "as GGUF, Llama 3.2 11B Vision Instruct as safetensors).",
        description="Downloads into LLAMA_STACK_MODELS_DIR (default ~/.llamastack/models), resuming an "
        "interrupted download and checking every file's checksum. HF_TOKEN: a token for gated repos; "
        "HF_ENDPOINT: another hub (a mirror).",
    )
    get.add_argument("model", metavar="MODEL", help="e.g. Llama3.2-1B-Instruct (see `model list`).")
    get.add_argument("--source", metavar="REPO", help="Another hub repo holding the model's files.")
    get.add_argument(
        "--file",
        action="append",
        metavar="NAME",
        help="The GGUF file to take from the repo (e.g. another quantization); for a safetensors model, "
        "glob patterns of the files to take (repeatable).",
    )
    get.add_argument("--revision", default="main", help="Branch, tag or commit of the repo (default: main).")
    get.set_defaults(func=model.download)
    rm = model_sub.add_parser("remove", help="Delete a downloaded model.")
    rm.add_argument(
        "model", metavar="MODEL", help="e.g. Llama3.2-1B-Instruct (see `model list --downloaded`)."
    )
    rm.set_defaults(func=model.remove)
    fmt = model_sub.add_parser("prompt-format", help="Show the prompt format of a model's family.")
    fmt.add_argument(
        "-m", "--model-name", required=True, help="e.g. Llama3.2-3B-Instruct (see `model list`)."
    )
    fmt.add_argument("--raw", action="store_true", help="Print the Markdown source instead of rendering it.")
    fmt.set_defaults(func=model.prompt_format)
    model_refresh.add_parser(model_sub)
    return parser


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    sys.exit(args.func(args) or 0)


if __name__ == "__main__":
    main()
