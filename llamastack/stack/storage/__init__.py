"""Storage: the kv store and the validated record store built on it."""

__all__: list[str] = []
