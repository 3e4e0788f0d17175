"""Routers: per API, the resource tables and the routing to the owning provider."""

__all__: list[str] = []
