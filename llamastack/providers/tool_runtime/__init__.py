"""Tool runtimes."""

__all__: list[str] = []
