"""The process's stdout and stderr stay where they point while llama.cpp loads a model.

llama-cpp-python quiets a load with ``verbose=False`` by pointing file descriptors 1 and 2 at
/dev/null for its duration: that is process-wide, so every line another thread writes meanwhile is
lost (the server's own warnings at start-up, while a model loads). The redirection is not needed:
llama-cpp-python's log callback already drops llama.cpp's messages below ERROR when verbose is off,
and nothing else in a load writes to the streams. Its three users get a context that does nothing.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from llamastack.stack.library_imports import library_imports


class _StreamsLeftAlone:
    def __init__(self, disable: bool = True) -> None:
        pass

    def __enter__(self) -> _StreamsLeftAlone:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def keep_process_streams() -> None:
    """Idempotent; call before the first model loads."""
    with library_imports:
        from llama_cpp import _internals, llama, llama_chat_format

    modules: tuple[ModuleType, ...] = (_internals, llama, llama_chat_format)
    for module in modules:
        if getattr(module, "suppress_stdout_stderr", None) is not None:
            module.suppress_stdout_stderr = _StreamsLeftAlone  # type: ignore[attr-defined]
