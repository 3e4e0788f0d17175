"""Images in messages: what the translators carry, Mllama's prompt rules, and image decoding."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from llamastack.stack.apis import responses as r
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.inference import openai as o
from llamastack.stack.apis.inference.core import ChatMessage
from llamastack.stack.errors import BadRequestError, StackError
from llamastack.stack.outbound import OutboundPolicy
from llamastack.stack.translate.native import messages_from_native
from llamastack.stack.translate.openai import chat_request_from_openai
from llamastack.stack.translate.responses import chat_messages

PIL = pytest.importorskip("PIL")


def _png(size: tuple[int, int] = (4, 3)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, "PNG")
    return out.getvalue()


def test_native_user_images_are_carried_in_order() -> None:
    content = [
        {"type": "image", "image": {"url": {"uri": "https://example.com/a.png"}}},
        {"type": "text", "text": "What is "},
        {"type": "image", "image": {"data": "aGk="}},
        {"type": "text", "text": "this?"},
    ]
    [message] = messages_from_native([n.UserMessage(content=content)])
    assert message.content == "What is this?"
    assert message.images == ["https://example.com/a.png", "data:image;base64,aGk="]


def test_native_images_outside_user_messages_are_refused() -> None:
    image = {"type": "image", "image": {"data": "aGk="}}
    with pytest.raises(StackError, match=r"messages\[0\] contains an image") as info:
        messages_from_native([n.SystemMessage(content=[image])])
    assert info.value.status_code == 400


def test_openai_image_url_parts_are_carried() -> None:
    request = o.OpenaiChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe "},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    ],
                }
            ],
        }
    )
    [message] = chat_request_from_openai(request).messages
    assert (message.content, message.images) == ("Describe ", ["data:image/png;base64,AAAA"])


def test_responses_input_image_is_carried_and_needs_a_url() -> None:
    item = r.ResponseMessage.model_validate(
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}
    )
    [message] = chat_messages([item], None)
    assert message.images == ["https://x/y.png"]
    empty = r.ResponseMessage.model_validate({"role": "user", "content": [{"type": "input_image"}]})
    with pytest.raises(BadRequestError, match="image_url"):
        chat_messages([empty], None)


def test_mllama_takes_the_last_image_and_no_system_role() -> None:
    from llamastack.providers.inference.transformers.prompt import last_image_only, llama3_vision_prompt

    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "first", images=["old.png"]),
        ChatMessage("assistant", "a cat"),
        ChatMessage("user", "second", images=["a.png", "new.png"]),
    ]
    turns = last_image_only(messages)
    assert turns.image == "new.png"
    assert [m.role for m in turns.messages] == ["user", "assistant", "user"]
    assert turns.messages[0].content == "Be brief.\n\nfirst"
    assert turns.image_turn == 2
    assert all(not m.images for m in turns.messages)
    prompt = llama3_vision_prompt(turns.messages, turns.image_turn)
    assert prompt.count("<|image|>") == 1
    assert prompt.endswith(
        "<|start_header_id|>user<|end_header_id|>\n\n<|image|>second<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nBe brief.")


def test_without_an_image_the_system_role_stays() -> None:
    from llamastack.providers.inference.transformers.prompt import last_image_only

    messages = [ChatMessage("system", "S"), ChatMessage("user", "U")]
    turns = last_image_only(messages)
    assert turns.image is None and [m.role for m in turns.messages] == ["system", "user"]


async def test_a_data_url_image_is_decoded() -> None:
    from llamastack.providers.utils.images import load_image

    url = "data:image/png;base64," + base64.b64encode(_png((5, 7))).decode()
    image = await load_image(url, "messages[0]", OutboundPolicy())
    assert image.size == (5, 7) and image.mode == "RGB"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("data:image/png;base64," + base64.b64encode(b"GIF? no").decode(), "not an image"),
        ("data:image/png;base64,!!!!", "invalid base64"),
        ("data:image/png,abc", "must be base64"),
        ("file:///etc/passwd", "neither an http(s) URL nor a data URL"),
        ("data:image/png;base64,", "empty"),
        ("http://127.0.0.1:9/x.png", "Refused to connect"),
    ],
)
async def test_bad_images_are_400_naming_the_message(ref: str, expected: str) -> None:
    from llamastack.providers.utils.images import load_image

    with pytest.raises(BadRequestError, match="messages\\[3\\]") as info:
        await load_image(ref, "messages[3]", OutboundPolicy())
    assert expected in info.value.detail
    assert info.value.status_code == 400


async def test_a_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from llamastack.providers.utils import images

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 100)
    url = "data:image/png;base64," + base64.b64encode(_png((20, 20))).decode()
    with pytest.raises(BadRequestError, match="20x20 pixels"):
        await images.load_image(url, "messages[0]", OutboundPolicy())


async def test_an_oversized_data_url_is_refused() -> None:
    from llamastack.providers.utils.images import load_image

    url = "data:image/png;base64," + base64.b64encode(_png((64, 64))).decode()
    with pytest.raises(StackError, match="larger than"):
        await load_image(url, "messages[0]", OutboundPolicy(), max_bytes=10)


def test_model_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where inline::transformers takes weights from: folders, GGUF files, downloads, hub ids."""
    from llamastack.providers.inference.transformers.loading import ModelSource, model_source
    from llamastack.stack.model_store import MANIFEST

    monkeypatch.setenv("LLAMA_STACK_MODELS_DIR", str(tmp_path / "models"))
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF")
    assert model_source(str(folder)) == ModelSource(str(folder))
    assert model_source(str(folder / "m.gguf")) == ModelSource(str(folder), "m.gguf")
    assert model_source("meta-llama/Llama-3.2-11B-Vision-Instruct").location.startswith("meta-llama/")
    with pytest.raises(BadRequestError, match="llama-stack model download"):
        model_source("Llama3.2-11B-Vision-Instruct")
    with pytest.raises(BadRequestError, match="does not exist"):
        model_source(str(tmp_path / "missing.gguf"))
    with pytest.raises(BadRequestError, match="neither a local folder"):
        model_source("./no/such/folder")
    # Once downloaded (a folder with its manifest), the name and Meta's repo id find the folder.
    vision = tmp_path / "models" / "Llama3.2-11B-Vision-Instruct"
    vision.mkdir(parents=True)
    (vision / "config.json").write_text("{}")
    manifest = {
        "model": "Llama3.2-11B-Vision-Instruct",
        "path": ".",
        "files": {"config.json": {"size": 2}},
        "repo": "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "revision": "main",
    }
    (vision / MANIFEST).write_text(json.dumps(manifest))
    expected = ModelSource(str(vision.resolve()))
    assert model_source("Llama3.2-11B-Vision-Instruct") == expected
    assert model_source("meta-llama/Llama-3.2-11B-Vision-Instruct") == expected
    assert model_source("download://Llama3.2-11B-Vision-Instruct") == expected
