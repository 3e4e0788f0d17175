"""Continuous batching in the llama.cpp provider: concurrent requests decode together, and nothing about
their output depends on it (greedy text equals one-at-a-time text), n > 1 choices, prefix reuse, and
max_parallel with the FIFO queue behind it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import CHAT_MODEL, RunningServer, start_server

pytestmark = pytest.mark.integration

CHAT = "/v1/openai/v1/chat/completions"
COMPLETIONS = "/v1/openai/v1/completions"
NO_EOS = {"0": -100, "1": -100, "2": -100}  # SmolLM2's special tokens: every request runs to max_tokens


def _chat(base_url: str, text: str, max_tokens: int = 24, **extra: object) -> dict:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }
    r = httpx.post(f"{base_url}{CHAT}", json=body, timeout=180)
    assert r.status_code == 200, r.text
    return r.json()


def _stream_text(base_url: str, prompt: str, max_tokens: int) -> str:
    body = {
        "model": CHAT_MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "logit_bias": NO_EOS,
    }
    parts: list[str] = []
    with httpx.stream("POST", f"{base_url}{COMPLETIONS}", json=body, timeout=180) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                parts.extend(c.get("text") or "" for c in json.loads(line[6:])["choices"])
    return "".join(parts)


PROMPTS = [f"Tell me a short story about a {animal}." for animal in ("cat", "dog", "fox", "owl", "bee")]


def test_concurrent_greedy_outputs_equal_one_at_a_time(base_url: str) -> None:
    serial = [_chat(base_url, p)["choices"][0]["message"]["content"] for p in PROMPTS]
    streamed_serial = _stream_text(base_url, "Once upon a time", 40)
    with ThreadPoolExecutor(max_workers=len(PROMPTS) + 1) as pool:
        chats = [pool.submit(_chat, base_url, p) for p in PROMPTS]
        streamed = pool.submit(_stream_text, base_url, "Once upon a time", 40)
        concurrent = [f.result()["choices"][0]["message"]["content"] for f in chats]
    assert concurrent == serial
    assert streamed.result() == streamed_serial
    assert all(serial)


def test_n_choices_decode_together_and_greedy_choices_agree(base_url: str) -> None:
    one = _chat(base_url, PROMPTS[0], logit_bias=NO_EOS)
    many = _chat(base_url, PROMPTS[0], n=3, logit_bias=NO_EOS)
    texts = [c["message"]["content"] for c in sorted(many["choices"], key=lambda c: c["index"])]
    assert [c["index"] for c in sorted(many["choices"], key=lambda c: c["index"])] == [0, 1, 2]
    assert texts == [one["choices"][0]["message"]["content"]] * 3
    assert many["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]


def test_n_choices_stream_interleaved_with_their_indexes(base_url: str) -> None:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": PROMPTS[1]}],
        "max_tokens": 12,
        "temperature": 0,
        "n": 2,
        "stream": True,
        "logit_bias": NO_EOS,
        "stream_options": {"include_usage": True},
    }
    text: dict[int, str] = {0: "", 1: ""}
    finished: list[int] = []
    usage = None
    with httpx.stream("POST", f"{base_url}{CHAT}", json=body, timeout=180) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk["choices"]:
                text[choice["index"]] += choice["delta"].get("content") or ""
                if choice.get("finish_reason"):
                    finished.append(choice["index"])
    assert sorted(finished) == [0, 1]
    assert (
        text[0]
        == text[1]
        == _chat(base_url, PROMPTS[1], 12, logit_bias=NO_EOS)["choices"][0]["message"]["content"]
    )
    assert usage is not None and usage["completion_tokens"] == 24


@pytest.fixture(scope="module")
def reuse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_server(tmp_path_factory.mktemp("prefix-reuse"), env={"LLAMA_CPP_PREFIX_REUSE": "true"})
    try:
        yield server.base_url
    finally:
        server.stop()


def test_a_reused_prompt_prefix_gives_the_same_output(reuse_url: str) -> None:
    """A later turn of a conversation starts from the cached KV of the earlier one (prefix reuse is
    opt-in); on this short conversation what it generates is what a fresh computation gives (greedy)."""
    base_url = reuse_url
    system = "You are a helpful assistant who answers in one sentence. " * 8
    turn = [{"role": "system", "content": system}, {"role": "user", "content": "Name a colour."}]
    body = {"model": CHAT_MODEL, "max_tokens": 16, "temperature": 0, "messages": turn}
    first = httpx.post(f"{base_url}{CHAT}", json=body, timeout=180).json()["choices"][0]["message"]["content"]
    again = httpx.post(f"{base_url}{CHAT}", json=body, timeout=180).json()["choices"][0]["message"]["content"]
    assert again == first
    follow = [*turn, {"role": "assistant", "content": first}, {"role": "user", "content": "Another one."}]
    r = httpx.post(f"{base_url}{CHAT}", json={**body, "messages": follow}, timeout=180)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def two_parallel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("two-parallel")


def test_max_parallel_runs_that_many_queues_one_and_turns_the_rest_away(two_parallel: Path) -> None:
    server: RunningServer = start_server(
        two_parallel, env={"LLAMA_CPP_MAX_PARALLEL": "2", "LLAMA_CPP_MAX_QUEUED_REQUESTS": "1"}
    )
    try:
        body = {"model": CHAT_MODEL, "prompt": "Once upon a time", "max_tokens": 200, "temperature": 0}
        body["logit_bias"] = NO_EOS
        started: dict[int, float] = {}
        finished: dict[int, float] = {}
        statuses: dict[int, int] = {}
        retry: list[str | None] = []

        def call(i: int) -> None:
            url = f"{server.base_url}{COMPLETIONS}"
            with httpx.stream("POST", url, json={**body, "stream": True}, timeout=180) as r:
                statuses[i] = r.status_code
                if r.status_code == 503:
                    retry.append(r.headers.get("retry-after"))
                    r.read()
                    assert "try again" in json.loads(r.text)["detail"]
                    return
                for line in r.iter_lines():
                    if line.startswith("data: {") and i not in started:
                        started[i] = time.monotonic()
                finished[i] = time.monotonic()

        threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join(timeout=180)
        assert sorted(statuses.values()) == [200, 200, 200, 503, 503]
        assert all(h is not None and int(h) >= 1 for h in retry)
        # The first two ran at once; the queued one started only when one of them had finished.
        # (Arrival order on a loaded machine is not the threads' start order: judge by what happened.)
        a, b, c = sorted(started, key=started.__getitem__)
        assert started[b] < finished[a]
        assert started[c] >= min(finished[a], finished[b]) - 0.05
    finally:
        server.stop()


def test_native_batch_routes_answer_each_item_like_a_single_request(http: httpx.Client) -> None:
    greedy = {"strategy": {"type": "greedy"}, "max_tokens": 12}
    items = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    r = http.post(
        "/v1/inference/batch-chat-completion",
        json={"model_id": CHAT_MODEL, "messages_batch": items, "sampling_params": greedy},
    )
    assert r.status_code == 200, r.text
    batch = [item["completion_message"]["content"] for item in r.json()["batch"]]
    singles = [
        http.post(
            "/v1/inference/chat-completion",
            json={"model_id": CHAT_MODEL, "messages": m, "sampling_params": greedy},
        ).json()["completion_message"]["content"]
        for m in items
    ]
    assert batch == singles
    r = http.post(
        "/v1/inference/batch-completion",
        json={
            "model_id": CHAT_MODEL,
            "content_batch": ["Once upon a time", "The sky is"],
            "sampling_params": greedy,
        },
    )
    assert r.status_code == 200, r.text
    assert [type(item["content"]) for item in r.json()["batch"]] == [str, str]
    r = http.post("/v1/inference/batch-completion", json={"model_id": CHAT_MODEL, "content_batch": []})
    assert r.status_code == 400 and "content_batch" in r.json()["detail"]
