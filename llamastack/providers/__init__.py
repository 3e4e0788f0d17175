"""Providers: one package per provider, grouped by API; `registry.py` lists them all as data."""

__all__: list[str] = []
