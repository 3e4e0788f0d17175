"""The official openai SDK, unchanged, against our server."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

from conftest import CHAT_MODEL, EMBEDDING_MODEL

pytestmark = pytest.mark.integration

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def test_models_list_has_both_default_models(openai_client) -> None:
    ids = {m.id for m in openai_client.models.list()}
    assert {CHAT_MODEL, EMBEDDING_MODEL} <= ids


def test_chat_completion(openai_client) -> None:
    r = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=20,
    )
    assert r.object == "chat.completion"
    assert r.model == CHAT_MODEL
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_content_parts_are_joined_not_dropped(openai_client) -> None:
    """Text given as a list of parts must reach the model exactly like a plain string."""
    question = "What is the capital of France?"
    plain = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": question}],
        temperature=0,
        max_tokens=12,
    )
    parts = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": [{"type": "text", "text": question}]}],
        temperature=0,
        max_tokens=12,
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens


def test_chat_streaming_matches_non_streaming(openai_client) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Write one sentence about llamas."}]
    full = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=messages, temperature=0, max_tokens=24
    )
    stream = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=messages,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.completion_tokens == full.usage.completion_tokens


def test_stop_sequence_is_honoured_and_not_returned(openai_client) -> None:
    messages = [SYSTEM, {"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    free = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=messages, temperature=0, max_tokens=40
    )
    text = free.choices[0].message.content
    assert "3" in text, text
    stopped = openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=messages, temperature=0, max_tokens=40, stop=["3"]
    )
    assert stopped.choices[0].message.content == text[: text.index("3")]
    assert stopped.choices[0].finish_reason == "stop"


def test_max_tokens_gives_length_finish(openai_client) -> None:
    r = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": "Tell me a long story about a dragon."}],
        temperature=0,
        max_tokens=5,
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_logprobs(openai_client) -> None:
    r = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[SYSTEM, {"role": "user", "content": "Say hello."}],
        temperature=0,
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for token in content:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == 3
        # Greedy decoding picks the most likely token.
        assert math.isclose(token.logprob, token.top_logprobs[0].logprob, abs_tol=1e-5)


def test_seeded_sampling_is_reproducible(openai_client) -> None:
    args = dict(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Invent a name for a llama."}],
        temperature=1.0,
        top_p=0.9,
        max_tokens=12,
        seed=1234,
    )
    a = openai_client.chat.completions.create(**args).choices[0].message.content
    b = openai_client.chat.completions.create(**args).choices[0].message.content
    assert a == b


def test_multi_turn_conversation(openai_client) -> None:
    r = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[
            SYSTEM,
            {"role": "user", "content": "My name is Alice."},
            {"role": "assistant", "content": "Nice to meet you, Alice!"},
            {"role": "user", "content": "What is my name?"},
        ],
        temperature=0,
        max_tokens=16,
    )
    assert "Alice" in r.choices[0].message.content


def test_completions(openai_client) -> None:
    r = openai_client.completions.create(
        model=CHAT_MODEL, prompt="The capital of France is", temperature=0, max_tokens=4
    )
    assert r.object == "text_completion"
    assert "Paris" in r.choices[0].text
    assert r.usage.completion_tokens == 4
    stream = openai_client.completions.create(
        model=CHAT_MODEL, prompt="The capital of France is", temperature=0, max_tokens=4, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == r.choices[0].text


def test_embeddings_float_and_base64(openai_client) -> None:
    r = openai_client.embeddings.create(
        model=EMBEDDING_MODEL, input=["a llama", "an alpaca", "a spreadsheet"]
    )
    vectors = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    for v in vectors:
        assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert r.usage.prompt_tokens > 0

    b64 = openai_client.embeddings.create(model=EMBEDDING_MODEL, input="a llama", encoding_format="base64")
    raw = b64.data[0].embedding
    # The SDK decodes base64 itself when it asked for it; accept either form.
    decoded = raw if isinstance(raw, list) else list(struct.unpack("<384f", base64.b64decode(raw)))
    assert all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(decoded, vectors[0], strict=True))


def test_unknown_model_is_404(openai_client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert "no-such-model" in str(info.value)


def test_error_mid_request_is_400_not_500(openai_client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.embeddings.create(model=CHAT_MODEL, input="x")
    assert "not an embedding model" in str(info.value)


def test_n_choices_chat_and_completion(openai_client) -> None:
    messages = [{"role": "user", "content": "Name a fruit."}]
    reply = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=messages,
        max_tokens=6,
        n=3,
        temperature=1.0,
        seed=7,
        logprobs=True,
        top_logprobs=2,
    )
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.logprobs and c.logprobs.content for c in reply.choices)
    assert reply.usage.completion_tokens == sum(len(c.logprobs.content) for c in reply.choices)
    texts = {c.message.content for c in reply.choices}
    assert len(texts) > 1, "seeded choices should differ"

    completion = openai_client.completions.create(
        model=CHAT_MODEL, prompt="Once", max_tokens=4, n=2, logprobs=1
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.logprobs is not None for c in completion.choices)


def test_n_choices_stream_with_indexes_and_one_usage(openai_client) -> None:
    stream = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=5,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    finished: dict[int, str] = {}
    text: dict[int, str] = {0: "", 1: ""}
    usages = []
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            text[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    assert set(finished) == {0, 1}
    assert all(text.values())
    assert len(usages) == 1 and usages[0].completion_tokens <= 10

    stream = openai_client.completions.create(model=CHAT_MODEL, prompt="Once", max_tokens=3, n=2, stream=True)
    indexes = {choice.index for chunk in stream for choice in chunk.choices}
    assert indexes == {0, 1}
