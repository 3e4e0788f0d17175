"""`llama-stack model refresh`: asks a running server to list its engines' models now
(POST /v1/models:refresh) and shows what changed. Stdlib HTTP; the same variables as the official
client: LLAMA_STACK_BASE_URL (default http://127.0.0.1:8321) and LLAMA_STACK_API_KEY (an admin key
when the server has keys)."""

from __future__ import annotations

import argparse
import json
import os

from ._commands import _fail, _table

DEFAULT_URL = "http://127.0.0.1:8321"


def _plain(text: str) -> str:
    """Server text shown as is (rich would read "[...]" as markup)."""
    from rich.markup import escape

    return escape(text)


def refresh(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    base = (args.url or os.environ.get("LLAMA_STACK_BASE_URL") or DEFAULT_URL).rstrip("/")
    body = json.dumps({"provider_id": args.provider} if args.provider else {}).encode()
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("LLAMA_STACK_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{base}/v1/models:refresh", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            results = json.loads(response.read())["data"]
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail") or exc.reason
        except ValueError:
            detail = exc.reason
        return _fail(_plain(f"{base} answered HTTP {exc.code}: {detail}"))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(_plain(f"Could not reach the server at {base} ({reason}); is it running? (--url)"))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        rows = [
            [
                r["provider_id"],
                r["status"] if r["status"] == "OK" else f"Error: {r.get('message') or ''}",
                ", ".join(r["added"]) or "-",
                ", ".join(r["removed"]) or "-",
                ", ".join(r["served"]) or "-",
            ]
            for r in results
        ]
        rows = [[_plain(cell) for cell in row] for row in rows]
        _table(f"Engine models at {base}", ["Provider", "Status", "Added", "Removed", "Engine serves"], rows)
    return 0 if all(r["status"] == "OK" for r in results) else 1


def add_parser(model_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = model_sub.add_parser(
        "refresh",
        help="Ask a running server to register the models its remote engines serve now.",
        description="POST /v1/models:refresh: each remote engine (or the one of --provider) lists its "
        "models; the new ones are registered, discovered ones it dropped are unregistered. The server: "
        f"--url, else LLAMA_STACK_BASE_URL, else {DEFAULT_URL}; LLAMA_STACK_API_KEY is sent as the key.",
    )
    parser.add_argument("--url", help="The server's base URL.")
    parser.add_argument("--provider", metavar="ID", help="Only this inference provider's engine.")
    parser.add_argument("--json", action="store_true", help="Print the server's answer as JSON.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait (default 60).")
    parser.set_defaults(func=refresh)
