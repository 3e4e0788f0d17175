"""`llama-stack build`: environments and container images for a distribution."""

__all__: list[str] = []
