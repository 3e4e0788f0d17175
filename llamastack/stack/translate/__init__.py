"""Translations between the wire formats (native v0.2.12, OpenAI) and the internal inference core."""

__all__: list[str] = []
