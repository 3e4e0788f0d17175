"""Concurrent clients on one model: all answered, in arrival order, and a gone client frees the model."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import CHAT_MODEL, RunningServer, start_server

pytestmark = pytest.mark.integration


def _chat(base_url: str, text: str, max_tokens: int = 8) -> dict:
    r = httpx.post(
        f"{base_url}/v1/openai/v1/chat/completions",
        json={
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_eight_concurrent_clients_all_answered(base_url: str) -> None:
    def client(i: int) -> list[str]:
        return [
            _chat(base_url, f"Client {i}, request {k}: say a word.")["choices"][0]["message"]["content"]
            for k in range(3)
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(client, range(8)))
    assert len(results) == 8
    assert all(len(r) == 3 and all(isinstance(t, str) and t for t in r) for r in results)


def test_requests_are_served_in_arrival_order(base_url: str) -> None:
    """A long request holds the model; requests queued behind it start in the order they arrived."""
    first_token_at: dict[int, float] = {}

    def stream(i: int, max_tokens: int) -> None:
        body = {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": f"Tell story number {i}."}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "logit_bias": {"0": -100, "1": -100, "2": -100},  # every request runs to its max_tokens
        }
        with httpx.stream("POST", f"{base_url}/v1/openai/v1/chat/completions", json=body, timeout=120) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: {") and '"content":"' in line and i not in first_token_at:
                    first_token_at[i] = time.monotonic()

    threads = [threading.Thread(target=stream, args=(0, 400))]
    threads[0].start()
    time.sleep(0.3)  # request 0 is generating
    for i in range(1, 6):
        t = threading.Thread(target=stream, args=(i, 4))
        t.start()
        threads.append(t)
        time.sleep(0.25)  # fixes the arrival order, with room for scheduling jitter on a loaded machine
    for t in threads:
        t.join(timeout=120)
    order = sorted(first_token_at, key=first_token_at.__getitem__)
    assert order == [0, 1, 2, 3, 4, 5]


def test_client_that_disconnects_mid_stream_frees_the_model(base_url: str) -> None:
    body = {
        "model": CHAT_MODEL,
        "prompt": "Once upon a time",
        "max_tokens": 3000,
        "temperature": 0.8,
        "stream": True,
    }
    with httpx.stream("POST", f"{base_url}/v1/openai/v1/completions", json=body, timeout=120) as r:
        received = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                received += 1
            if received >= 5:
                break  # leaving the block closes the connection
    # 3000 tokens would take the model far longer than this timeout; a freed model answers at once.
    r = httpx.post(
        f"{base_url}/v1/openai/v1/chat/completions",
        json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=20,
    )
    assert r.status_code == 200


def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    # One request at a time (no batching): one generating, one waiting, the rest turned away.
    env = {"LLAMA_CPP_MAX_QUEUED_REQUESTS": "1", "LLAMA_CPP_MAX_PARALLEL": "1"}
    server: RunningServer = start_server(tmp_path / "busy", env=env)
    try:
        statuses: list[int] = []
        headers: list[str | None] = []
        body = {"model": CHAT_MODEL, "prompt": "Once upon a time", "max_tokens": 60, "temperature": 0}
        body["logit_bias"] = {"0": -100, "1": -100, "2": -100}  # all 60 tokens, every time
        started = time.monotonic()
        assert (
            httpx.post(f"{server.base_url}/v1/openai/v1/completions", json=body, timeout=120).status_code
            == 200
        )
        one_request_s = time.monotonic() - started

        def call() -> None:
            r = httpx.post(f"{server.base_url}/v1/openai/v1/completions", json=body, timeout=120)
            statuses.append(r.status_code)
            headers.append(r.headers.get("retry-after"))
            if r.status_code == 503:
                detail = json.loads(r.text)["detail"]
                assert "try again" in detail
                # The model as clients name it, not the file behind it.
                assert f"'{CHAT_MODEL}'" in detail and ".gguf" not in detail

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(timeout=120)
        # One generating, one waiting; the others are turned away rather than piling up.
        assert statuses.count(200) >= 2
        assert 503 in statuses
        waits = [int(h or 0) for s, h in zip(statuses, headers, strict=True) if s == 503]
        # A new request waits for the running one and the queued one: at least one request's time.
        assert all(w >= max(1, int(one_request_s)) for w in waits), (waits, one_request_s)
    finally:
        server.stop()


def test_agent_turn_refused_by_a_busy_engine_leaves_no_turn_behind(tmp_path: Path) -> None:
    # A client retrying after Retry-After must not find the refused turn in its session's history.
    env = {"LLAMA_CPP_MAX_QUEUED_REQUESTS": "1", "LLAMA_CPP_MAX_PARALLEL": "1"}
    server: RunningServer = start_server(tmp_path / "busy-agent", env=env)
    try:
        url = server.base_url
        agent = httpx.post(
            f"{url}/v1/agents",
            json={"agent_config": {"model": CHAT_MODEL, "instructions": "Answer briefly."}},
            timeout=30,
        ).json()["agent_id"]
        session = httpx.post(
            f"{url}/v1/agents/{agent}/session", json={"session_name": "busy"}, timeout=30
        ).json()["session_id"]
        body = {"model": CHAT_MODEL, "prompt": "Once upon a time", "max_tokens": 120, "temperature": 0}
        body["logit_bias"] = {"0": -100, "1": -100, "2": -100}  # all 120 tokens, every time
        fillers = [
            threading.Thread(
                target=lambda: httpx.post(f"{url}/v1/openai/v1/completions", json=body, timeout=120)
            )
            for _ in range(2)
        ]
        for t in fillers:  # one generating, one queued: the engine is full
            t.start()
            time.sleep(0.2)
        turn = httpx.post(
            f"{url}/v1/agents/{agent}/session/{session}/turn",
            json={"messages": [{"role": "user", "content": "Hello"}], "stream": False},
            timeout=120,
        )
        for t in fillers:
            t.join(timeout=120)
        assert turn.status_code == 503, turn.text
        assert turn.headers.get("retry-after")
        stored = httpx.get(f"{url}/v1/agents/{agent}/session/{session}", timeout=30)
        assert stored.status_code == 200, stored.text
        assert stored.json()["turns"] == []
        # The retry is served and is the session's only turn.
        retry = httpx.post(
            f"{url}/v1/agents/{agent}/session/{session}/turn",
            json={"messages": [{"role": "user", "content": "Hello"}], "stream": False},
            timeout=120,
        )
        assert retry.status_code == 200, retry.text
        turns = httpx.get(f"{url}/v1/agents/{agent}/session/{session}", timeout=30).json()["turns"]
        assert [t["turn_id"] for t in turns] == [retry.json()["turn_id"]]
    finally:
        server.stop()
