"""The llama-stack command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def llama_stack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "llamastack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_help_lists_the_commands() -> None:
    out = llama_stack("--help")
    assert out.returncode == 0
    for command in ("run", "list-apis", "list-providers", "list-distributions"):
        assert command in out.stdout


def test_help_does_not_import_the_server() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from llamastack.cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
        "print(sorted(m for m in ('fastapi', 'pydantic', 'uvicorn', 'rich', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_list_commands() -> None:
    apis = llama_stack("list-apis")
    assert apis.returncode == 0 and "inference" in apis.stdout and "agents" in apis.stdout
    providers = llama_stack("list-providers", "inference")
    assert providers.returncode == 0
    assert "inline::llama-cpp" in providers.stdout and "inline::sentence-transformers" in providers.stdout
    safety = llama_stack("list-providers", "safety")
    assert safety.returncode == 0
    assert "inline::llama-guard" in safety.stdout and "inline::code-scanner" in safety.stdout
    dists = llama_stack("list-distributions")
    assert dists.returncode == 0 and "local" in dists.stdout


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    out = llama_stack("run", "no-such-distribution")
    assert out.returncode == 1
    assert "list-distributions" in out.stderr
    assert "Traceback" not in out.stderr

    out = llama_stack("list-providers", "nonsense")
    assert out.returncode == 1 and "Unknown API" in out.stderr

    config = tmp_path / "run.yaml"
    config.write_text(
        "image_name: t\n"
        f"state_dir: {tmp_path}\n"
        "providers:\n  inference:\n    - provider_id: p\n      provider_type: inline::llama-cpp\n"
        "models:\n  - model_id: m\n    provider_model_id: ${env.MY_MODEL_PATH}\n"
    )
    out = llama_stack("run", str(config))
    assert out.returncode == 1
    assert "MY_MODEL_PATH" in out.stderr and "--env MY_MODEL_PATH=" in out.stderr
    assert "Traceback" not in out.stderr

    out = llama_stack("run", str(config), "--env", f"MY_MODEL_PATH={tmp_path}/missing.gguf")
    assert out.returncode == 1
    assert "missing.gguf" in out.stderr and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr

    out = llama_stack("run", str(config), "--env", "oops")
    assert out.returncode == 1 and "KEY=VALUE" in out.stderr
