"""What a distribution image runs: the server on every interface of the container, but only with API
keys configured or an explicit switch; and its HEALTHCHECK.

Inside a container, loopback is unreachable through a published port, so the server must bind
0.0.0.0 to be of use; without keys that would hand every API to whoever reaches the port.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXPOSE_SWITCH = "LLAMA_STACK_EXPOSE_WITHOUT_AUTH"


def choose_host(auth_enabled: bool, env: dict[str, str]) -> tuple[str | None, str | None]:
    """The address to bind, or None and the reason it refuses to start."""
    from llamastack.stack.server.hosts import is_loopback

    asked = env.get("LLAMA_STACK_HOST", "").strip()
    if asked and is_loopback(asked):
        return asked, None
    if auth_enabled or env.get(EXPOSE_SWITCH, "").lower() in ("1", "true", "yes"):
        return asked or "0.0.0.0", None
    return None, (
        "This image serves on 0.0.0.0 only with API keys: set LLAMA_STACK_API_KEYS=<key>[,<key>...] "
        "(clients then send `Authorization: Bearer <key>`), or, to serve without keys behind a port "
        f"published on 127.0.0.1 only, set {EXPOSE_SWITCH}=true."
    )


def healthcheck() -> int:
    import urllib.request

    port = os.environ.get("LLAMA_STACK_PORT", "8321")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["--healthcheck"]:
        return healthcheck()
    if len(argv) != 1:
        print("usage: python -m llamastack.cli.images.entrypoint RUN_YAML | --healthcheck", file=sys.stderr)
        return 2
    from llamastack.stack.config import load_run_config
    from llamastack.stack.errors import StackError
    from llamastack.stack.server.run import serve

    config_path = Path(argv[0])
    try:
        run_config = load_run_config(config_path)
    except StackError as exc:
        print(f"Error: {exc.detail}", file=sys.stderr)
        return 1
    host, refusal = choose_host(run_config.server.auth.enabled, dict(os.environ))
    if host is None:
        print(f"Error: {refusal}", file=sys.stderr)
        return 2
    try:
        return serve(config_path, host=host, port=None, access_log=False)
    except StackError as exc:
        print(f"Error: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
