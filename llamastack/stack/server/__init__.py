"""The FastAPI app: routes, middleware (auth, hosts, error envelope), SSE and the OpenAPI document."""

__all__: list[str] = []
