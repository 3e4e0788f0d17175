"""`llama-stack model list` and `llama-stack model prompt-format`, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys


def llama_stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamastack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_model_list_shows_the_targeted_families() -> None:
    out = llama_stack("model", "list")
    assert out.returncode == 0, out.stderr
    for name in (
        "Llama3.2-3B-Instruct",
        "Llama3.2-11B-Vision-Instruct",
        "Llama-Guard-3-1B",
        "Llama3.1-8B-Instruct",
    ):
        assert name in out.stdout
    assert "meta-llama/Llama-3.2-3B-Instruct" in out.stdout and "128K" in out.stdout
    assert "Llama-2-7b" not in out.stdout

    everything = llama_stack("model", "list", "--all")
    assert everything.returncode == 0, everything.stderr
    assert "Llama-2-7b" in everything.stdout and "Llama-4-Scout-17B-16E-Instruct" in everything.stdout


def test_prompt_format_renders_the_family_doc() -> None:
    out = llama_stack("model", "prompt-format", "-m", "Llama3.2-3B-Instruct")
    assert out.returncode == 0, out.stderr
    assert "python_tag" in out.stdout
    vision = llama_stack("model", "prompt-format", "-m", "meta-llama/Llama-3.2-11B-Vision-Instruct", "--raw")
    assert vision.returncode == 0, vision.stderr
    assert "<|image|>" in vision.stdout
    guard = llama_stack("model", "prompt-format", "-m", "Llama-Guard-3-1B")
    assert guard.returncode == 0 and "unsafe" in guard.stdout


def test_prompt_format_errors_say_what_to_do() -> None:
    out = llama_stack("model", "prompt-format", "-m", "Llama3.2-3B-Instrct")
    assert out.returncode == 1
    assert "Llama3.2-3B-Instruct" in out.stderr and "llama-stack model list" in out.stderr
    assert "Traceback" not in out.stderr

    out = llama_stack("model", "prompt-format", "-m", "Llama-4-Scout-17B-16E-Instruct")
    assert out.returncode == 1 and "no prompt format doc" in out.stderr
    assert "Traceback" not in out.stderr


def test_model_commands_are_in_help_and_load_lazily() -> None:
    out = llama_stack("model", "--help")
    assert out.returncode == 0 and "list" in out.stdout and "prompt-format" in out.stdout
    assert "model" in llama_stack("--help").stdout
    code = (
        "import sys, contextlib, io\n"
        "from llamastack.cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
        "print('llama_models' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
