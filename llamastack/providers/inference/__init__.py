"""Inference providers."""

__all__: list[str] = []
