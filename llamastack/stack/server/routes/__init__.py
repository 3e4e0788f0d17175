"""One FastAPI router per API; FastAPI derives validation and the OpenAPI document from them."""

__all__: list[str] = []
