"""Vector stores for chunks and their embeddings."""
