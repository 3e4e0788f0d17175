"""Helpers shared by providers."""

__all__: list[str] = []
