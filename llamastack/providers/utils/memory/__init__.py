"""Memory helpers shared by the RAG tool and vector stores: document loading and chunking."""
