"""Vector stores for chunks and their embeddings."""

__all__: list[str] = []
