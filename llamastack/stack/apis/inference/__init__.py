"""Inference API: native v0.2.12 types, OpenAI-compatible types, and the one internal core."""

__all__: list[str] = []
