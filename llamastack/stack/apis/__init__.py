"""API definitions: pydantic types, the Protocol providers implement, and a FastAPI router per API."""
