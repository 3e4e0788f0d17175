"""The `cuda` distribution on this CPU-only machine: transformers falls back to the CPU.

One server for the module (loading SmolLM2 through transformers dequantizes its GGUF: ~30 s idle):
- the chat model is the bundled SmolLM2-135M GGUF, loaded by transformers (``gguf_file=``);
- the vision model is a tiny random-weight Mllama built in the set-up (tests/tiny_mllama.py). Its
  answers are noise: these tests prove the image path (images in every API, fetch rules, the
  processor, cross-attention, tokens out), not the quality of a vision model;
- the Llama Guard 3 Vision shield runs on the same tiny Mllama, its output restricted by a grammar to
  the verdict format: the wiring of vision safety, not the quality of its verdicts.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tiny_mllama import build_tiny_mllama

from conftest import LoopbackWeb, RunningServer, smollm2_path, start_server

pytest.importorskip("transformers")
pytest.importorskip("PIL")

pytestmark = pytest.mark.integration

TEXT = "HuggingFaceTB/SmolLM2-135M-Instruct"
VISION = "tiny-mllama"
GUARD = "tiny-Llama-Guard-3-11B-Vision"
CHAT = "/v1/inference/chat-completion"
OPENAI_CHAT = "/v1/openai/v1/chat/completions"


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


RED = _png((255, 0, 0))
BLUE = _png((0, 0, 255), (64, 64))


def _data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def images() -> Iterator[LoopbackWeb]:
    web = LoopbackWeb(
        {
            "/red.png": (200, {"Content-Type": "image/png"}, RED),
            "/not-an-image": (200, {"Content-Type": "image/png"}, b"plain text, not a PNG"),
        }
    )
    yield web
    web.close()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mllama(tmp_path_factory.mktemp("tiny-mllama"))


@pytest.fixture(scope="module")
def cuda_server(
    tmp_path_factory: pytest.TempPathFactory, images: LoopbackWeb, tiny_folder: Path
) -> Iterator[RunningServer]:
    folder = tiny_folder
    env = {
        "VISION_MODEL": VISION,
        "VISION_MODEL_PATH": str(folder),
        "SAFETY_MODEL": GUARD,
        "SAFETY_MODEL_PATH": str(folder),
        "INFERENCE_MODEL_PATH": smollm2_path(),
        # Images by URL come from this one loopback port; every other private address stays refused.
        "LLAMA_STACK_OUTBOUND_ALLOW": images.address,
    }
    running = start_server(tmp_path_factory.mktemp("cuda-state"), config="cuda", env=env, timeout_s=420)
    yield running
    running.stop()


@pytest.fixture()
def http(cuda_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cuda_server.base_url, timeout=120) as client:
        yield client


def _openai_chat(http: httpx.Client, content: object, **extra: object) -> httpx.Response:
    body = {
        "model": VISION,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 1,
        **extra,
    }
    return http.post(OPENAI_CHAT, json=body)


def _first_logprob(response: httpx.Response) -> float:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["logprobs"]["content"][0]["logprob"]


def _image_part(url: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url}}


def _text_part(text: str) -> dict[str, object]:
    return {"type": "text", "text": text}


# --- start-up -------------------------------------------------------------------------------------


def test_the_cuda_distribution_falls_back_to_the_cpu(cuda_server: RunningServer, http: httpx.Client) -> None:
    assert "No CUDA GPU is available" in cuda_server.log()
    models = {m["identifier"]: m for m in http.get("/v1/models").json()["data"]}
    assert models[VISION]["metadata"]["vision"] is True
    assert models[VISION]["metadata"]["device"] == "cpu"
    assert models[VISION]["metadata"]["dtype"] == "float32"
    assert models[TEXT]["metadata"]["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert models[TEXT]["provider_id"] == "transformers"


# --- the image path ---------------------------------------------------------------------------------


def test_an_image_reaches_the_vision_model(http: httpx.Client) -> None:
    """The image changes what the model computes: the same text with two different images gives
    different logprobs, and the prompt has one more token (<|image|>) than without an image."""
    question = _text_part("What is in this image?")
    red = _openai_chat(http, [_image_part(_data_url(RED)), question])
    blue = _openai_chat(http, [_image_part(_data_url(BLUE)), question])
    none = _openai_chat(http, [question])
    assert _first_logprob(red) != _first_logprob(blue)
    assert red.json()["usage"]["prompt_tokens"] == none.json()["usage"]["prompt_tokens"] + 1
    assert red.json()["usage"]["completion_tokens"] >= 1


def test_only_the_last_image_is_passed(http: httpx.Client) -> None:
    question = _text_part("Describe it.")
    both = _openai_chat(http, [_image_part(_data_url(BLUE)), _image_part(_data_url(RED)), question])
    red_only = _openai_chat(http, [_image_part(_data_url(RED)), question])
    assert _first_logprob(both) == pytest.approx(_first_logprob(red_only), abs=1e-4)
    assert both.json()["usage"]["prompt_tokens"] == red_only.json()["usage"]["prompt_tokens"]


def test_a_system_message_is_folded_into_the_first_user_turn(http: httpx.Client) -> None:
    body = {
        "model": VISION,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [_image_part(_data_url(RED)), _text_part("What is this?")]},
        ],
        "max_tokens": 3,
        "temperature": 0,
    }
    answer = http.post(OPENAI_CHAT, json=body)
    assert answer.status_code == 200, answer.text
    folded = _openai_chat(http, [_image_part(_data_url(RED)), _text_part("Be brief.\n\nWhat is this?")])
    assert answer.json()["usage"]["prompt_tokens"] == folded.json()["usage"]["prompt_tokens"]


def test_an_image_by_url_is_fetched(http: httpx.Client, images: LoopbackWeb) -> None:
    question = _text_part("What is in this image?")
    by_url = _openai_chat(http, [_image_part(f"{images.url}/red.png"), question])
    inline = _openai_chat(http, [_image_part(_data_url(RED)), question])
    assert _first_logprob(by_url) == pytest.approx(_first_logprob(inline), abs=1e-4)
    assert "/red.png" in images.hits


def test_native_chat_completion_with_image_data_and_streaming(http: httpx.Client) -> None:
    image = {"type": "image", "image": {"data": base64.b64encode(RED).decode()}}
    body = {
        "model_id": VISION,
        "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}],
        "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 5},
    }
    whole = http.post(CHAT, json=body)
    assert whole.status_code == 200, whole.text
    metrics = {m["metric"]: m["value"] for m in whole.json()["metrics"]}
    assert metrics["completion_tokens"] >= 1
    with http.stream("POST", CHAT, json={**body, "stream": True}) as streamed:
        assert streamed.status_code == 200
        lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert '"event_type":"complete"' in lines[-1].replace(" ", "")


def test_responses_take_input_image(http: httpx.Client) -> None:
    body = {
        "model": VISION,
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": _data_url(RED)},
                    {"type": "input_text", "text": "What is this?"},
                ],
            }
        ],
        "max_output_tokens": 4,
        "temperature": 0,
    }
    response = http.post("/v1/openai/v1/responses", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("completed", "incomplete")  # incomplete: max_output_tokens
    assert response.json()["usage"]["output_tokens"] >= 1


def test_an_agent_turn_takes_an_image(http: httpx.Client) -> None:
    agent = http.post(
        "/v1/agents",
        json={
            "agent_config": {
                "model": VISION,
                "instructions": "Describe images.",
                "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 4},
            }
        },
    )
    assert agent.status_code == 200, agent.text
    agent_id = agent.json()["agent_id"]
    session = http.post(f"/v1/agents/{agent_id}/session", json={"session_name": "s"}).json()["session_id"]
    image = {"type": "image", "image": {"url": {"uri": _data_url(RED)}}}
    turn = http.post(
        f"/v1/agents/{agent_id}/session/{session}/turn",
        json={
            "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}],
            "stream": False,
        },
    )
    assert turn.status_code == 200, turn.text
    assert [s["step_type"] for s in turn.json()["steps"]] == ["inference"]


# --- vision safety ------------------------------------------------------------------------------------


def test_the_vision_shield_judges_image_and_text(http: httpx.Client) -> None:
    image = {"type": "image", "image": {"data": base64.b64encode(RED).decode()}}
    messages = [{"role": "user", "content": [image, {"type": "text", "text": "Is this fine?"}]}]
    result = http.post(
        "/v1/safety/run-shield", json={"shield_id": "llama-guard", "messages": messages, "params": {}}
    )
    assert result.status_code == 200, result.text
    violation = result.json()["violation"]
    assert violation is None or violation["metadata"]["violation_type"].startswith("S")


# --- bad image input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (_data_url(b"hello, not an image"), "not an image"),
        ("data:image/png;base64,***", "base64"),
        ("data:image/png,rawbytes", "must be base64"),
        ("ftp://example.com/x.png", "neither an http(s) URL nor a data URL"),
        ("http://127.0.0.1:9/x.png", "127.0.0.1"),  # a private address the operator did not allow
    ],
)
def test_bad_images_are_400(http: httpx.Client, url: str, expected: str) -> None:
    response = _openai_chat(http, [_image_part(url), _text_part("What is this?")])
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert expected in detail
    assert "messages[0]" in detail


def test_a_fetched_file_that_is_not_an_image_is_400(http: httpx.Client, images: LoopbackWeb) -> None:
    response = _openai_chat(http, [_image_part(f"{images.url}/not-an-image"), _text_part("?")])
    assert response.status_code == 400
    assert "not an image" in response.json()["detail"]
    missing = _openai_chat(http, [_image_part(f"{images.url}/missing.png"), _text_part("?")])
    assert missing.status_code == 400
    assert "404" in missing.json()["detail"]


def test_an_image_to_the_text_model_is_400(http: httpx.Client) -> None:
    response = _openai_chat(http, [_image_part(_data_url(RED)), _text_part("?")], model=TEXT)
    assert response.status_code == 400
    assert "takes text only" in response.json()["detail"]


def test_an_image_in_an_assistant_message_is_400(http: httpx.Client) -> None:
    body = {
        "model_id": VISION,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [{"type": "image", "image": {"data": base64.b64encode(RED).decode()}}],
                "stop_reason": "end_of_turn",
            },
            {"role": "user", "content": "and?"},
        ],
    }
    response = http.post(CHAT, json=body)
    assert response.status_code == 400
    assert "messages[1]" in response.json()["detail"]


# --- SmolLM2 through transformers (gguf_file=) ------------------------------------------------------------


def test_smollm2_from_its_gguf_answers(http: httpx.Client) -> None:
    body = {
        "model": TEXT,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16,
        "temperature": 0,
    }
    whole = http.post(OPENAI_CHAT, json=body)
    assert whole.status_code == 200, whole.text
    text = whole.json()["choices"][0]["message"]["content"]
    assert "Paris" in text
    with http.stream("POST", OPENAI_CHAT, json={**body, "stream": True}) as streamed:
        assert streamed.status_code == 200
        import json

        pieces = [
            json.loads(line[6:])
            for line in streamed.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in pieces if c.get("choices")]
    assert len([d for d in deltas if d]) > 1  # token by token, not one piece
    assert "".join(deltas) == text


def test_smollm2_stop_sequence_and_json_schema(http: httpx.Client) -> None:
    body = {
        "model": TEXT,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16,
        "temperature": 0,
        "stop": ["Paris"],
    }
    stopped = http.post(OPENAI_CHAT, json=body)
    assert stopped.status_code == 200
    assert "Paris" not in stopped.json()["choices"][0]["message"]["content"]
    assert stopped.json()["choices"][0]["finish_reason"] == "stop"
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    }
    constrained = http.post(
        OPENAI_CHAT,
        json={
            **{k: v for k, v in body.items() if k != "stop"},
            "max_tokens": 24,
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        },
    )
    assert constrained.status_code == 200, constrained.text
    import json

    assert set(json.loads(constrained.json()["choices"][0]["message"]["content"])) == {"city"}


# --- in process: what the processor made of the image ----------------------------------------------------


async def test_the_processor_turns_the_image_into_pixel_values(tiny_folder: Path) -> None:
    from llamastack.providers.inference.transformers.config import TransformersConfig
    from llamastack.providers.inference.transformers.provider import TransformersInference
    from llamastack.stack.apis.inference.core import ChatMessage, ChatRequest, SamplingOptions
    from llamastack.stack.apis.models import Model, ModelType

    provider = TransformersInference(TransformersConfig(device="cpu"))
    model = await provider.register_model(
        Model(
            identifier=VISION,
            provider_resource_id=str(tiny_folder),
            provider_id="transformers",
            model_type=ModelType.llm,
        )
    )
    request = ChatRequest(
        messages=[ChatMessage("user", "What is this?", images=[_data_url(BLUE)])],
        sampling=SamplingOptions(max_tokens=3, temperature=0),
    )
    try:
        result = await provider.chat(model, request)
        prompt = provider._models[VISION].engine.last_prompt
        assert prompt is not None
        # (batch, images, tiles, channels, height, width): one image, one 28x28 tile (max_image_tiles=1)
        assert prompt.image_shape == (1, 1, 1, 3, 28, 28)
        image_token = provider._models[VISION].engine.tokenizer.convert_tokens_to_ids("<|image|>")
        assert prompt.inputs["input_ids"][0].tolist().count(image_token) == 1
        assert result.usage.completion_tokens >= 1
    finally:
        await provider.shutdown()


# --- on a GPU --------------------------------------------------------------------------------------------


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU; this machine has none")
def test_the_vision_model_runs_on_the_gpu(tmp_path: Path) -> None:
    import asyncio

    from llamastack.providers.inference.transformers.config import TransformersConfig
    from llamastack.providers.inference.transformers.provider import TransformersInference
    from llamastack.stack.apis.models import Model, ModelType

    folder = build_tiny_mllama(tmp_path / "tiny")
    provider = TransformersInference(TransformersConfig(device="cuda"))
    model = Model(
        identifier=VISION,
        provider_resource_id=str(folder),
        provider_id="transformers",
        model_type=ModelType.llm,
    )
    registered = asyncio.run(provider.register_model(model))
    assert registered.metadata["device"].startswith("cuda")
    assert registered.metadata["dtype"] == "bfloat16"
