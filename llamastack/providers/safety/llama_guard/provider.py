"""The inline::llama-guard safety provider."""

from __future__ import annotations

from typing import Any

from llamastack.stack.apis.common import ImageContentItem, content_to_text
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.inference.core import ChatMessage, ChatRequest, Inference, SamplingOptions
from llamastack.stack.apis.models import Model, Models, ModelType
from llamastack.stack.apis.safety import (
    CANNED_RESPONSE,
    RunShieldResponse,
    SafetyViolation,
    Shield,
    ViolationLevel,
)
from llamastack.stack.errors import BadRequestError, NotFoundError, UpstreamError

from .config import LlamaGuardConfig
from .prompt import (
    CATEGORIES,
    MalformedVerdictError,
    Policy,
    Turn,
    Verdict,
    build_prompt,
    parse_verdict,
    variant_of,
    verdict_grammar,
)


def _image_url(item: ImageContentItem) -> str | None:
    if item.image.url is not None:
        return item.image.url.uri
    if item.image.data:
        return f"data:image;base64,{item.image.data}"
    return None


def _last_user_image(messages: list[n.Message]) -> str | None:
    """Llama Guard 3 Vision takes one image: the most recent one a user sent."""
    for m in reversed(messages):
        if not isinstance(m, n.UserMessage):
            continue
        items = m.content if isinstance(m.content, list) else [m.content]
        for item in reversed(items):
            if isinstance(item, ImageContentItem) and (url := _image_url(item)):
                return url
    return None


def to_turns(messages: list[n.Message]) -> list[Turn]:
    """The conversation as Llama Guard sees it: user and agent turns, starting with a user turn."""
    turns: list[Turn] = []
    for m in messages:
        if isinstance(m, n.SystemMessage):
            continue
        text = content_to_text(m.content)
        if isinstance(m, n.CompletionMessage):
            calls = [f"{c.tool_name}({c.arguments_json or c.arguments})" for c in m.tool_calls or []]
            text = "\n".join(filter(None, [text, *calls]))
            turns.append(Turn("assistant", text))
        else:
            turns.append(Turn("user", text))
    if not turns:
        raise BadRequestError("messages: Llama Guard needs at least one user or assistant message.")
    if turns[0].role != "user":  # the model expects a conversation to open with the user
        turns[0] = Turn("user", turns[0].text)
    return turns


class LlamaGuardSafety:
    def __init__(self, config: LlamaGuardConfig, *, inference: Inference, models: Models) -> None:
        self.config = config
        self.inference = inference
        self.models = models

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def _guard_model(self, shield: Shield) -> Model:
        model_id = shield.provider_resource_id or shield.identifier
        try:
            model = await self.models.get_model(model_id)
        except NotFoundError:
            raise BadRequestError(
                f"Shield '{shield.identifier}' needs model '{model_id}', which is not registered. "
                "Register the Llama Guard model first (POST /v1/models), then the shield."
            ) from None
        if model.model_type != ModelType.llm:
            raise BadRequestError(
                f"Model '{model_id}' is an embedding model; a Llama Guard shield needs an llm."
            )
        return model

    async def policy(self, shield: Shield) -> Policy:
        params = shield.params or {}
        model = await self._guard_model(shield)
        variant = params.get("variant") or variant_of(
            model.identifier, model.provider_resource_id, str(model.metadata.get("gguf_file", ""))
        )
        if variant not in ("1B", "8B", "11B-Vision"):
            raise BadRequestError(f"params.variant must be 1B, 8B or 11B-Vision, not {variant!r}.")
        return Policy(
            variant=variant,
            excluded=frozenset(params.get("excluded_categories", self.config.excluded_categories)),
            descriptions=self.config.category_descriptions,
            custom=tuple((c.name, c.description) for c in self.config.custom_categories),
        )

    async def register_shield(self, shield: Shield) -> Shield:
        policy = await self.policy(shield)
        unknown = [c for c in policy.excluded if c not in policy.known_codes()]
        if unknown:
            raise BadRequestError(
                f"excluded_categories has codes this model does not use: {sorted(unknown)}."
            )
        return shield

    async def unregister_shield(self, shield: Shield) -> None:
        return None

    def build_request(self, policy: Policy, messages: list[n.Message], constrain: bool = True) -> ChatRequest:
        image = _last_user_image(messages) if policy.variant == "11B-Vision" else None
        prompt = build_prompt(to_turns(messages), policy)
        return ChatRequest(
            messages=[ChatMessage("user", prompt, images=[image] if image else None)],
            sampling=SamplingOptions(temperature=0.0, max_tokens=32),
            grammar=verdict_grammar(policy) if constrain else None,
        )

    async def run_shield(
        self, shield: Shield, messages: list[n.Message], params: dict[str, Any]
    ) -> RunShieldResponse:
        model = await self._guard_model(shield)
        policy = await self.policy(shield)
        options = {**(shield.params or {}), **params}
        constrain = bool(options.get("constrain_output", self.config.constrain_output))
        request = self.build_request(policy, messages, constrain)
        result = await self.inference.chat(model.identifier, request)
        try:
            verdict = parse_verdict(result.text, policy)
        except MalformedVerdictError as exc:
            raise UpstreamError(
                f"Guard model '{model.identifier}' returned a malformed verdict ({exc}); "
                "the content was not judged. Check that the shield's model is a Llama Guard model."
            ) from None
        return shield_response(verdict, policy)


def shield_response(verdict: Verdict, policy: Policy) -> RunShieldResponse:
    if verdict.safe:
        return RunShieldResponse(violation=None)
    names = {code: name for code, name, _ in policy.categories()}
    return RunShieldResponse(
        violation=SafetyViolation(
            violation_level=ViolationLevel.error,
            user_message=CANNED_RESPONSE,
            metadata={
                "violation_type": ",".join(verdict.codes),
                "categories": [names.get(c, CATEGORIES.get(c, c)) for c in verdict.codes],
            },
        )
    )
