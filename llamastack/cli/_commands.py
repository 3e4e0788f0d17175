"""Subcommand bodies. Heavy imports stay inside the functions."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

API_DESCRIPTIONS = {
    "inference": "Chat, completion and embeddings (native and OpenAI-compatible)",
    "models": "Register, list and remove models",
    "providers": "Inspect the configured providers",
    "inspect": "Health, version and routes",
    "safety": "Run shields (Llama Guard) over messages",
    "shields": "Register and list shields",
    "vector_io": "Insert and query chunks in vector dbs",
    "vector_dbs": "Register and list vector dbs",
    "tool_runtime": "List and invoke tools",
    "tool_groups": "Register and list tool groups",
    "agents": "Agents, sessions and turns",
    "files": "Upload and manage files",
}


def _fail(message: str) -> int:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]Error:[/] {message}", highlight=False)
    return 1


def _resolve_config(name_or_path: str) -> Path | None:
    from llamastack.distributions import available

    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    return available().get(name_or_path)


def build(args: argparse.Namespace) -> int:
    from llamastack.stack.errors import StackError

    from .images.commands import build as build_command

    try:
        return build_command(args)
    except StackError as exc:
        return _fail(exc.detail)
    except KeyboardInterrupt:
        return 130


def run(args: argparse.Namespace) -> int:
    if args.image_type == "container":
        from llamastack.stack.errors import StackError

        from .images.commands import run_container

        try:
            return run_container(args)
        except StackError as exc:
            return _fail(exc.detail)
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return _fail(f"--env expects KEY=VALUE, got '{item}'.")
        os.environ[key] = value
    config_path = _resolve_config(args.config)
    if config_path is None:
        from llamastack.distributions import available

        names = ", ".join(available()) or "none"
        return _fail(
            f"'{args.config}' is neither a distribution ({names}) nor a run.yaml file. "
            "See `llama-stack list-distributions`."
        )
    from llamastack.stack.errors import StackError
    from llamastack.stack.server.run import serve

    try:
        return serve(config_path, host=args.host, port=args.port, access_log=args.access_log)
    except StackError as exc:
        return _fail(exc.detail)
    except KeyboardInterrupt:
        return 130


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold", show_lines=False)
    for i, column in enumerate(columns):
        # The first column is an identifier people copy: never break it.
        table.add_column(column, overflow="fold", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def list_apis(args: argparse.Namespace) -> int:
    from llamastack.stack.datatypes import Api

    _table("APIs", ["API", "What it does"], [[a.value, API_DESCRIPTIONS.get(a.value, "")] for a in Api])
    return 0


def list_providers(args: argparse.Namespace) -> int:
    from llamastack.providers.registry import providers_for
    from llamastack.stack.datatypes import Api

    api = None
    if args.api:
        try:
            api = Api(args.api.replace("-", "_"))
        except ValueError:
            return _fail(f"Unknown API '{args.api}'. Known: {', '.join(a.value for a in Api)}.")
    rows = [
        [p.api.value, p.provider_type, p.description, ", ".join(p.pip_packages)] for p in providers_for(api)
    ]
    if not rows:
        print(f"No providers for the {api} API yet.", file=sys.stderr)
        return 0
    _table("Providers", ["API", "Provider type", "Description", "Packages"], rows)
    return 0


def list_distributions(args: argparse.Namespace) -> int:
    from llamastack.distributions import available, describe

    rows = [[name, describe(path), str(path)] for name, path in available().items()]
    _table("Distributions", ["Name", "Description", "Run config"], rows)
    return 0
