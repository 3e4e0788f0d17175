"""The `llama-stack` command."""

__all__: list[str] = []
