"""`llama-stack build`: environments and container images for a distribution."""
