"""Loading a model never silences the process: llama-cpp-python's quiet load points stdout and
stderr at /dev/null for its duration, and the server's warnings written meanwhile from other
threads were lost (about half of them in a run of this test without the fix)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

_LOAD_WHILE_LOGGING = textwrap.dedent(
    """
    import logging, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from llama_engine import GGUF
    from llamastack.providers.inference.llama_cpp.config import LlamaCppConfig
    from llamastack.providers.inference.llama_cpp.engine import LlamaCppModel

    loaded = threading.Event()
    def load():
        LlamaCppModel(GGUF, LlamaCppConfig(), grow=False).close()
        loaded.set()

    loader = threading.Thread(target=load)
    loader.start()
    written = 0
    while not loaded.is_set() or written < 50:
        logging.getLogger("other").warning("line %d", written)
        written += 1
        time.sleep(0.0005)
    loader.join()
    print(written)
    """
)


def test_log_lines_from_other_threads_survive_a_model_load() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _LOAD_WHILE_LOGGING, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    written = int(run.stdout.split()[-1])
    arrived = [line for line in run.stderr.splitlines() if line.startswith("line ")]
    assert len(arrived) == written, f"{written - len(arrived)} of {written} lines lost during the load"
    assert arrived == [f"line {n}" for n in range(written)]
