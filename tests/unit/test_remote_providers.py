"""The remote inference providers' configs and the `remote` distribution, as data."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llamastack.distributions import available
from llamastack.providers.inference.remote.databricks.config import DatabricksConfig
from llamastack.providers.inference.remote.ollama.config import OllamaConfig
from llamastack.providers.inference.remote.openai_compat.config import OpenAICompatibleConfig
from llamastack.providers.inference.remote.vllm.config import VLLMConfig
from llamastack.providers.registry import providers_for
from llamastack.stack.config import load_run_config
from llamastack.stack.datatypes import Api
from llamastack.stack.secrets import redact


def test_engine_urls_end_at_their_openai_routes() -> None:
    assert VLLMConfig(url="http://gpu:8000").base_url() == "http://gpu:8000/v1"
    assert VLLMConfig(url="http://gpu:8000/v1/").base_url() == "http://gpu:8000/v1"
    assert OllamaConfig().base_url() == "http://localhost:11434/v1"
    # Any other server: the URL as given.
    assert OpenAICompatibleConfig(url="https://api.example/openai").base_url() == "https://api.example/openai"


def test_databricks_url_comes_from_the_host() -> None:
    config = DatabricksConfig.model_validate({"host": "dbc-1.cloud.databricks.com", "api_key": "dapi-x"})
    assert config.base_url() == "https://dbc-1.cloud.databricks.com/serving-endpoints"


def test_an_engine_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="http"):
        VLLMConfig(url="file:///etc/passwd")


def test_api_keys_are_secrets() -> None:
    config = VLLMConfig.model_validate({"url": "http://gpu:8000", "api_key": "tok-123"})
    assert config.key() == "tok-123"
    assert "tok-123" not in repr(config) and "tok-123" not in config.model_dump_json()
    assert redact(config)["api_key"] == "********"


def test_every_remote_provider_is_one_registry_entry_over_aiohttp() -> None:
    remote = [p for p in providers_for(Api.inference) if p.provider_type.startswith("remote::")]
    assert {p.provider_type for p in remote} == {
        f"remote::{name}"
        for name in (
            "openai-compatible",
            "llama-cpp-server",
            "vllm",
            "ollama",
            "tgi",
            "openai",
            "together",
            "fireworks",
            "databricks",
        )
    }
    assert all(any(pkg.startswith("aiohttp") for pkg in p.pip_packages) for p in remote)


def test_remote_distribution_selects_the_engine_from_the_environment() -> None:
    env = {"LLAMA_CPP_SERVER_URL": "http://127.0.0.1:8080/v1", "INFERENCE_MODEL": "smollm2"}
    config = load_run_config(available()["remote"], env)
    inference = [p.provider_id for p in config.providers["inference"] if p.provider_id]
    assert inference == ["llama-cpp-server", "sentence-transformers"]
    llms = [m for m in config.models if m.model_id and m.model_type == "llm"]
    assert [(m.model_id, m.provider_id, m.provider_model_id) for m in llms] == [
        ("smollm2", "llama-cpp-server", "smollm2")
    ]
    # The same agents, memory, safety and tools as `local`.
    local = load_run_config(available()["local"], {})
    for api in ("safety", "vector_io", "agents", "tool_runtime", "files"):
        assert [p.provider_type for p in config.providers[api]] == [
            p.provider_type for p in local.providers[api]
        ]


def test_remote_distribution_discovers_the_engines_models_when_asked() -> None:
    env = {"VLLM_URL": "http://gpu:8000", "INFERENCE_MODEL": "m"}
    for value, expected in ((None, False), ("true", True), ("false", False)):
        config = load_run_config(
            available()["remote"], {**env, **({"REFRESH_MODELS": value} if value else {})}
        )
        [vllm] = [p for p in config.providers["inference"] if p.provider_id == "vllm"]
        settings = VLLMConfig.model_validate(vllm.config)
        assert settings.refresh_models is expected and settings.refresh_interval_s == 300
    with pytest.raises(ValidationError, match="refresh_interval_s"):
        VLLMConfig(url="http://gpu:8000", refresh_interval_s=0)


def test_remote_distribution_needs_the_model_name_with_an_engine() -> None:
    from llamastack.stack.errors import ConfigError

    with pytest.raises(ConfigError, match="INFERENCE_MODEL"):
        load_run_config(available()["remote"], {"VLLM_URL": "http://gpu:8000"})


async def test_an_engine_without_a_url_is_never_called() -> None:
    from llamastack.providers.inference.remote.openai_compat.adapter import OpenAICompatInference
    from llamastack.stack.apis.inference.core import ChatMessage, ChatRequest, SamplingOptions
    from llamastack.stack.apis.models import Model
    from llamastack.stack.errors import BadRequestError

    provider = OpenAICompatInference(DatabricksConfig.model_validate({"host": ""}))
    model = Model(identifier="m", provider_id="databricks", provider_resource_id="m")
    with pytest.raises(BadRequestError, match="DATABRICKS_HOST"):
        await provider.chat(model, ChatRequest([ChatMessage("user", "hi")], SamplingOptions()))
    assert await provider.register_model(model) == model  # logged, not fatal at start-up
    await provider.shutdown()


async def test_the_servers_openai_identity_does_not_reach_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    from llamastack.providers.inference.remote.openai_compat.adapter import OpenAICompatInference
    from llamastack.providers.inference.remote.together.config import TogetherConfig
    from llamastack.stack import provider_data

    monkeypatch.setenv("OPENAI_ORG_ID", "org-of-the-host")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-of-the-host")
    provider = OpenAICompatInference(TogetherConfig())
    headers = provider._client.headers  # every request's
    assert "org-of-the-host" not in str(headers) and "proj-of-the-host" not in str(headers)
    token = provider_data._raw.set('{"together_api_key": "k-1"}')
    try:
        keyed, key = provider._caller()
    finally:
        provider_data._raw.reset(token)
    assert key == "k-1" and keyed["Authorization"] == "Bearer k-1"
    assert "org-of-the-host" not in str(keyed)
    await provider.shutdown()


@pytest.mark.parametrize("key", ["k-1\r\nX-Injected: 1", "k-1\n", "k-\x001", "kéy"])
async def test_a_request_key_that_is_not_a_plain_token_is_a_400(key: str) -> None:
    import json

    from llamastack.providers.inference.remote.openai_compat.adapter import OpenAICompatInference
    from llamastack.providers.inference.remote.together.config import TogetherConfig
    from llamastack.stack import provider_data
    from llamastack.stack.errors import BadRequestError

    provider = OpenAICompatInference(TogetherConfig())
    token = provider_data._raw.set(json.dumps({"together_api_key": key}))
    try:
        with pytest.raises(BadRequestError, match=r"together_api_key.*printable ASCII"):
            provider._caller()
    finally:
        provider_data._raw.reset(token)
    await provider.shutdown()


async def test_a_request_that_waited_out_the_connection_limit_is_a_503_and_not_retried() -> None:
    from llamastack.providers.inference.remote.openai_compat import http1
    from llamastack.providers.inference.remote.openai_compat.adapter import OpenAICompatInference
    from llamastack.providers.inference.remote.vllm.config import VLLMConfig
    from llamastack.stack.errors import ServerBusyError

    provider = OpenAICompatInference(VLLMConfig(url="http://127.0.0.1:9/v1", max_connections=1))
    busy = http1.Busy("all 1 connections to it stayed in use for 120 s (max_connections)")
    assert provider._retry_delay(busy, 0) is None  # it has waited its timeout already
    assert provider._retry_delay(http1.ConnectError("refused"), 0) == pytest.approx(0.2)
    error = provider._boundary().translate(busy)
    assert isinstance(error, ServerBusyError) and error.status_code == 503
    assert "max_connections" in error.detail
    await provider.shutdown()
