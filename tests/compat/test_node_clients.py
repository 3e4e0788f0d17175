"""The official Node clients, llama-stack-client@0.2.12 and openai, unchanged, against our server.

The set-up installs them from tests/compat/node/package-lock.json with the machine's npm (`npm ci`),
then each suite under tests/compat/node/suites runs with Node's own test runner against the session
server. Without node or npm the tests skip and name the missing tool; under CI they fail instead,
so a CI run can never pass without them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node"
SUITES = sorted(NODE_DIR.glob("suites/*.test.mjs"))
MIN_NODE_MAJOR = 20
INSTALL_TIMEOUT_S = 600
SUITE_TIMEOUT_S = 600


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _unavailable(
            f"{name} is not installed: install Node.js {MIN_NODE_MAJOR}+ and npm to run the Node suites"
        )
    return path


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}\n{result.stderr}".strip()


@pytest.fixture(scope="module")
def node() -> str:
    """The path of `node`, after installing the suites' exact dependencies with `npm ci`."""
    node = _tool("node")
    npm = _tool("npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE_MAJOR:
        _unavailable(f"node {version} is too old: the Node suites need Node.js {MIN_NODE_MAJOR}+")
    # An install of this very lock file is reused: `npm ci` starts from scratch every time.
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".llamastack-lock-sha256"
    wanted = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else None
    if wanted is not None and stamp.exists() and stamp.read_text().strip() == wanted:
        return node
    # `npm ci` installs exactly what the lock file says, from scratch. No install scripts run: none is
    # needed (the only one, esbuild's, comes with a dependency the clients never load).
    command = "ci" if lock.exists() else "install"
    result = subprocess.run(
        [npm, command, "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.fail(f"`npm {command}` in {NODE_DIR} failed ({result.returncode}):\n{_output(result)}")
    if wanted is not None:
        stamp.write_text(wanted)
    return node


def test_every_suite_is_collected() -> None:
    names = {p.name for p in SUITES}
    assert {"stack-inference.test.mjs", "stack-resources.test.mjs", "stack-agents.test.mjs"} <= names
    assert {"openai.test.mjs", "openai-responses.test.mjs"} <= names


@pytest.mark.parametrize("suite", SUITES, ids=[p.name.removesuffix(".test.mjs") for p in SUITES])
def test_node_suite(node: str, base_url: str, suite: Path) -> None:
    env = {**os.environ, "LLAMA_STACK_BASE_URL": base_url, "NO_COLOR": "1"}
    env.pop("NODE_OPTIONS", None)
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(suite.relative_to(NODE_DIR))],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    output = _output(result)
    assert result.returncode == 0, f"node --test {suite.name} failed ({result.returncode}):\n{output}"
    # The spec reporter's summary lines (U+2139 'tests N', 'pass N'): some ran and every one passed.
    counts = dict(re.findall(r"^\u2139 (tests|pass|fail|cancelled|skipped) (\d+)$", output, re.MULTILINE))
    assert int(counts.get("tests", 0)) > 0, f"no test ran in {suite.name}:\n{output}"
    assert counts.get("pass") == counts["tests"], output
