from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from llamastack.stack.secrets import Secret


class _WebToolConfig(BaseModel):
    api_key: Secret | None = Field(
        default=None, description="Default key; a request may bring its own in X-LlamaStack-Provider-Data."
    )
    max_results: int = Field(default=3, ge=1, le=20)
    timeout_s: float = Field(default=20.0, gt=0)

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {"api_key": "${env.%s:=}" % cls.env_var}  # noqa: UP031

    env_var: ClassVar[str] = "API_KEY"


class BraveSearchConfig(_WebToolConfig):
    base_url: str = "https://api.search.brave.com/res/v1/web/search"
    env_var: ClassVar[str] = "BRAVE_SEARCH_API_KEY"


class TavilySearchConfig(_WebToolConfig):
    base_url: str = "https://api.tavily.com/search"
    env_var: ClassVar[str] = "TAVILY_SEARCH_API_KEY"


class WolframAlphaConfig(_WebToolConfig):
    base_url: str = "https://api.wolframalpha.com/v2/query"
    env_var: ClassVar[str] = "WOLFRAM_ALPHA_API_KEY"
