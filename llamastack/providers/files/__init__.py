"""Files API providers."""

__all__: list[str] = []
