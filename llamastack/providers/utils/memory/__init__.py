"""Memory helpers shared by the RAG tool and vector stores: document loading and chunking."""

__all__: list[str] = []
