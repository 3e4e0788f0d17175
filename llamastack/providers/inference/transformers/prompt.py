"""Chat messages as a transformers model's input: its chat template, and Mllama's image rules.

Llama 3.2 Vision (Mllama) takes one image per prompt and has no system role when an image is
present: the most recent image of the conversation is the one passed (others are dropped), and the
system text is folded into the first user turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamastack.stack.apis.inference.core import ChatMessage
from llamastack.stack.errors import BadRequestError

from ...utils.tool_prompts import render_llama3

IMAGE_TOKEN = "<|image|>"


@dataclass(frozen=True, slots=True)
class VisionTurns:
    messages: list[ChatMessage]
    image: str | None  # the one image passed
    image_turn: int | None  # which message it belongs to


def last_image_only(messages: list[ChatMessage]) -> VisionTurns:
    """The conversation as Mllama takes it: only the last image kept; with an image, no system role."""
    image, image_turn = None, None
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].images:
            image, image_turn = messages[i].images[-1], i  # type: ignore[index]
            break
    if image is None:
        return VisionTurns(list(messages), None, None)
    system = "\n".join(m.content for m in messages if m.role == "system" and m.content)
    out: list[ChatMessage] = []
    folded = False
    turn = None
    for i, m in enumerate(messages):
        if m.role == "system":
            continue
        content = m.content
        if system and not folded and m.role == "user":
            content, folded = f"{system}\n\n{content}" if content else system, True
        if i == image_turn:
            turn = len(out)
        out.append(ChatMessage(m.role, content, tool_call_id=m.tool_call_id, tool_calls=m.tool_calls))
    if system and not folded:  # no user turn at all: the system text becomes one
        out.insert(0, ChatMessage("user", system))
        turn = (turn or 0) + 1
    return VisionTurns(out, image, turn)


def template_messages(messages: list[ChatMessage], image_turn: int | None = None) -> list[dict[str, Any]]:
    """Messages in the shape chat templates take; the image turn as [image, text] content parts."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        item: dict[str, Any] = {"role": m.role}
        if i == image_turn:
            item["content"] = [{"type": "image"}, {"type": "text", "text": m.content}]
        else:
            item["content"] = m.content
        if m.tool_call_id is not None:
            item["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            item["tool_calls"] = m.tool_calls
        out.append(item)
    return out


def llama3_vision_prompt(messages: list[ChatMessage], image_turn: int | None) -> str:
    """Meta's own Llama 3.2 Vision format, <|image|> opening the image turn's text. Llama Guard 3
    Vision takes its classification prompt this way: its Hugging Face chat template would wrap the
    prompt in a second copy of the policy."""
    marked = [
        ChatMessage(
            m.role, IMAGE_TOKEN + m.content if i == image_turn else m.content, tool_calls=m.tool_calls
        )
        for i, m in enumerate(messages)
    ]
    return render_llama3(marked, None, "3.2")


def apply_template(owner: Any, messages: list[dict[str, Any]], name: str) -> str:
    """The chat template of a tokenizer or processor, ending with the assistant's turn opened."""
    if not getattr(owner, "chat_template", None) and not getattr(
        getattr(owner, "tokenizer", None), "chat_template", None
    ):
        raise BadRequestError(
            f"Model '{name}' has no chat template (tokenizer_config.json or chat_template.jinja); "
            "use the completions route or a model that ships one."
        )
    try:
        return str(owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    except Exception as exc:  # templates raise on role orders they do not accept
        raise BadRequestError(f"The model's chat template rejected the messages: {exc}") from None
