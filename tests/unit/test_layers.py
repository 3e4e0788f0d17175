"""The core (`stack/`) never imports provider code: providers depend on the core, not the reverse.

The one exception is the resolver reading the provider registry, which is data (module paths as
strings), not provider code.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "llamastack" / "stack"
PROVIDERS = "llamastack.providers"
ALLOWED = {("llamastack/stack/resolver.py", "llamastack.providers.registry")}


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute name) of everything `source` (the code of `module`) imports, imports inside
    functions included. For `from a import b`, both `a` and `a.b` are listed (b may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def _is_provider_code(name: str) -> bool:
    return name == PROVIDERS or name.startswith(f"{PROVIDERS}.")


def test_the_core_imports_nothing_from_providers() -> None:
    offending = []
    sources = sorted(CORE.rglob("*.py"))
    assert len(sources) > 50, f"expected the core's modules under {CORE}"
    for path in sources:
        relative = path.relative_to(ROOT).as_posix()
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        for line, name in imported_modules(path.read_text(), module, is_package=is_package):
            if not _is_provider_code(name):
                continue
            if any(relative == where and name.startswith(allowed) for where, allowed in ALLOWED):
                continue
            offending.append(f"{relative}:{line} imports {name}")
    assert not offending, "the core must not import provider code:\n" + "\n".join(offending)


def test_every_kind_of_import_is_seen() -> None:
    source = (
        "import llamastack.providers.a\n"
        "from llamastack.providers.b import c\n"
        "from llamastack import providers\n"
        "def f():\n"
        "    from ...providers.d import e\n"
        "    from .. import ranking\n"
    )
    names = {name for _, name in imported_modules(source, "llamastack.stack.routing.example")}
    flagged = {name for name in names if _is_provider_code(name)}
    assert {"llamastack.providers.a", "llamastack.providers.b", "llamastack.providers"} <= flagged
    assert "llamastack.providers.d" in flagged  # relative, inside a function
    assert "llamastack.stack.ranking" in names and "llamastack.stack.ranking" not in flagged
