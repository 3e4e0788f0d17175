"""First imports of third-party libraries take turns across threads.

Python's import locks are per module, so they do not order two threads that reach one package by
different doors. When one thread imports numpy while another enters it through a submodule
(`numpy.typing`, as sqlite_vec and chromadb do), each holds a lock the other needs. Python breaks the
deadlock by handing one of them the half-initialised module, and that import fails ("cannot import
name 'NDArray' from partially initialized module 'numpy._typing'"). At start-up this happens when
the models load in threads while the stores open in others.

So blocking code that may be the first to import a library (loading a model, opening a store,
building an index) does it inside `library_imports`. Code on the event loop calls
`await libraries_imported(...)`, which imports in a worker thread under the same lock, so the loop
never waits for another thread's import. Once a library is loaded, its import inside the lock costs
an uncontended re-entrant lock (well under a microsecond). `tests/unit/test_library_imports.py`
checks that every import of a third-party library inside a function follows this rule.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading

library_imports = threading.RLock()


def _loaded(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def import_libraries(*names: str) -> None:
    """Blocking: imports `names`, one thread at a time; a dictionary lookup once they are loaded."""
    if all(_loaded(name) for name in names):
        return
    with library_imports:
        for name in names:
            importlib.import_module(name)


async def libraries_imported(*names: str) -> None:
    """From the event loop: the first import of `names` runs in a worker thread, under the lock."""
    if not all(_loaded(name) for name in names):
        await asyncio.to_thread(import_libraries, *names)


__all__ = ["import_libraries", "libraries_imported", "library_imports"]
