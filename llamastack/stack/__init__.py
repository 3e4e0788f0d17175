"""The core: API types and Protocols, routers, server, storage, config and resolver."""

__all__: list[str] = []
