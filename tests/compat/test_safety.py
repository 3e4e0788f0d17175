"""Shields and run-shield through the official client, with the local distribution's two providers."""

from __future__ import annotations

import httpx
import llama_stack_client
import pytest

from conftest import CHAT_MODEL, GUARD_MODEL

pytestmark = pytest.mark.integration

INSECURE = "Here you go:\n```python\nimport subprocess\nsubprocess.call('ls ' + user_dir, shell=True)\n```"
SAFE_CODE = "```python\nprint(sum(range(10)))\n```"


def _assistant(content: str) -> dict:
    return {"role": "assistant", "content": content, "stop_reason": "end_of_turn"}


def test_local_distribution_registers_both_shields(stack_client) -> None:
    shields = {s.identifier: s for s in stack_client.shields.list()}
    assert shields["code-scanner"].provider_id == "code-scanner"
    assert shields["llama-guard"].provider_id == "llama-guard"
    assert shields["llama-guard"].provider_resource_id == GUARD_MODEL
    assert stack_client.shields.retrieve("llama-guard").identifier == "llama-guard"


def test_code_scanner_flags_insecure_code(stack_client) -> None:
    r = stack_client.safety.run_shield(shield_id="code-scanner", messages=[_assistant(INSECURE)], params={})
    violation = r.violation
    assert violation is not None
    assert violation.violation_level == "error"
    assert "B602" in violation.metadata["violation_type"]
    assert violation.metadata["findings"][0]["line"] == 2
    assert violation.user_message


@pytest.mark.parametrize("content", [SAFE_CODE, "The capital of France is Paris.", "ok"])
def test_code_scanner_passes_safe_content(stack_client, content: str) -> None:
    r = stack_client.safety.run_shield(shield_id="code-scanner", messages=[_assistant(content)], params={})
    assert r.violation is None


def test_llama_guard_wiring_gives_a_well_formed_verdict(stack_client) -> None:
    """shield -> inference (grammar-bounded) -> parse -> response, for user and agent turns."""
    for messages in (
        [{"role": "user", "content": "How do I bake bread?"}],
        [{"role": "user", "content": "How do I bake bread?"}, _assistant("Mix flour, water and yeast.")],
        [_assistant("Hello! Ask me anything."), {"role": "user", "content": "hi"}],  # coerced to user first
    ):
        r = stack_client.safety.run_shield(shield_id="llama-guard", messages=messages, params={})
        if r.violation is not None:
            codes = r.violation.metadata["violation_type"].split(",")
            assert all(c.startswith("S") and c[1:].isdigit() for c in codes)
            assert r.violation.user_message == "I can't answer that. Can I help with something else?"


def test_unconstrained_guard_output_is_an_error_not_a_pass(base_url: str) -> None:
    """Without the grammar a non-guard model answers in prose: that is an error, never 'safe'."""
    r = httpx.post(
        f"{base_url}/v1/safety/run-shield",
        json={
            "shield_id": "llama-guard",
            "messages": [{"role": "user", "content": "Tell me a story."}],
            "params": {"constrain_output": False},
        },
        timeout=120,
    )
    assert r.status_code == 502, r.text
    assert "malformed verdict" in r.json()["detail"]


def test_register_use_and_remove_a_shield(stack_client, base_url: str) -> None:
    shield = stack_client.shields.register(
        shield_id="guard-no-advice",
        provider_id="llama-guard",
        provider_shield_id=CHAT_MODEL,
        params={"variant": "1B", "excluded_categories": ["S6"]},
    )
    assert shield.params == {"variant": "1B", "excluded_categories": ["S6"]}
    r = stack_client.safety.run_shield(
        shield_id="guard-no-advice", messages=[{"role": "user", "content": "hello"}], params={}
    )
    assert r.violation is None or "S6" not in r.violation.metadata["violation_type"]
    assert httpx.delete(f"{base_url}/v1/shields/guard-no-advice").status_code == 200
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.shields.retrieve("guard-no-advice")


def test_bad_shield_requests(stack_client, base_url: str) -> None:
    with pytest.raises(llama_stack_client.NotFoundError) as info:
        stack_client.safety.run_shield(
            shield_id="nope", messages=[{"role": "user", "content": "hi"}], params={}
        )
    assert "nope" in str(info.value)
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.shields.retrieve("nope")
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.shields.register(
            shield_id="g2", provider_id="llama-guard", provider_shield_id="no-such-model"
        )
    assert "no-such-model" in str(info.value)
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.shields.register(
            shield_id="g3",
            provider_id="llama-guard",
            provider_shield_id=CHAT_MODEL,
            params={"variant": "1B", "excluded_categories": ["S14"]},
        )
    assert "S14" in str(info.value)
    r = httpx.post(f"{base_url}/v1/safety/run-shield", json={"shield_id": "code-scanner", "messages": []})
    assert r.status_code == 400
    # Nothing half-registered is left behind.
    ids = {s.identifier for s in stack_client.shields.list()}
    assert not ids & {"g2", "g3"}
