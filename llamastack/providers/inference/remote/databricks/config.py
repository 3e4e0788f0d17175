from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from ..openai_compat.config import RemoteEngineConfig


class DatabricksConfig(RemoteEngineConfig):
    """Databricks model serving: the workspace host and a token; the URL follows from the host."""

    host: str = Field(
        default="", description="The workspace host, e.g. https://dbc-1234.cloud.databricks.com."
    )
    url: str = ""
    provider_type: ClassVar[str] = "remote::databricks"
    key_env: ClassVar[str] = "DATABRICKS_TOKEN"
    url_env: ClassVar[str] = "DATABRICKS_HOST"
    requires_key: ClassVar[bool] = True
    provider_data_key: ClassVar[str | None] = "databricks_api_token"

    @model_validator(mode="before")
    @classmethod
    def _url_from_host(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("url") and isinstance(data.get("host"), str):
            host = data["host"].strip().rstrip("/")
            if host and "://" not in host:
                host = f"https://{host}"
            data = {**data, "host": host, "url": f"{host}/serving-endpoints" if host else ""}
        return data

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"host": "${env.DATABRICKS_HOST}", "api_key": "${env.DATABRICKS_TOKEN:=}"}
