"""`llama-stack model download` against a loopback server laid out like the Hugging Face hub.

The real huggingface_hub client talks real HTTP to it (HF_ENDPOINT): HEAD/GET on
``/{repo}/resolve/{revision}/{file}`` with the hub's headers (X-Repo-Commit, X-Linked-Etag,
X-Linked-Size, ETag, Range -> 206) and ``/api/models/{repo}/revision/{revision}`` for folder models.
The served GGUF for the end-to-end check is SmolLM2's, so the downloaded file really loads and answers
under a Llama 3.2 name. What this proves: our use of the client, resume, checksums, error messages and
the server finding the download; not the real hub's behaviour today, nor the real Llama weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import free_port, smollm2_path, start_server

pytestmark = pytest.mark.integration

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GGUF_REPO = "bartowski/Llama-3.2-1B-Instruct-GGUF"
GGUF_FILE = "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
GUARD_REPO = "bartowski/Llama-Guard-3-1B-GGUF"
GUARD_FILE = "Llama-Guard-3-1B-Q4_K_M.gguf"
VISION_REPO = "meta-llama/Llama-3.2-11B-Vision-Instruct"
TOKEN = "hf_test_secret_token_value"
CHUNK = 10 * 1024 * 1024  # huggingface_hub writes downloads in chunks of this size
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<file>.+)$")


@dataclass
class Repo:
    files: dict[str, bytes | Path]
    gated: bool = False
    wrong_checksum: bool = False  # advertise the SHA-256 of other bytes
    cdn: bool = False  # large files redirect to another origin, as the hub's LFS/Xet files do


@dataclass
class FakeHub:
    url: str
    repos: dict[str, Repo]
    cdn_url: str = ""
    cdn_authorization: list[str | None] = field(default_factory=list)  # what the CDN was sent
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    drop_after: int | None = None  # close the connection after this many body bytes, once
    stall_after: int | None = None  # send this many body bytes, then hang until released
    release: threading.Event = field(default_factory=threading.Event)

    def ranges(self, name: str) -> list[str | None]:
        return [r for m, p, r in self.requests if m == "GET" and p.endswith(name)]


def _git_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _content(data: bytes | Path) -> bytes:
    return data.read_bytes() if isinstance(data, Path) else data


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _error(self, status: int, code: str, message: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _authorized(self, repo: Repo) -> bool:
            if not repo.gated:
                return True
            auth = self.headers.get("Authorization")
            if auth is None:
                self._error(401, "GatedRepo", "Access to this model is restricted. Please log in.")
                return False
            if auth != f"Bearer {TOKEN}":
                self._error(403, "GatedRepo", "Access to this model is restricted: accept its license.")
                return False
            return True

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            if match := API.match(self.path.split("?")[0]):
                repo = hub.repos.get(match["repo"])
                if repo is None:
                    return self._error(404, "RepoNotFound", "Repository not found")
                if not self._authorized(repo):
                    return None
                data = json.dumps(
                    {"id": match["repo"], "sha": COMMIT, "siblings": [{"rfilename": f} for f in repo.files]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            on_cdn = CDN.match(self.path.split("?")[0])
            match = on_cdn or RESOLVE.match(self.path)
            repo = hub.repos.get(match["repo"]) if match else None
            if match is None or repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            if on_cdn:
                hub.cdn_authorization.append(self.headers.get("Authorization"))
            elif not self._authorized(repo):
                return None
            if match["file"] not in repo.files:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            data = _content(repo.files[match["file"]])
            checked = b"other bytes" if repo.wrong_checksum else data
            # As on the hub: large (LFS) files carry their SHA-256 in X-Linked-Etag; files kept in git
            # itself (config JSON) only an ETag, git's blob hash.
            lfs = not match["file"].endswith((".json", ".md"))
            sha = hashlib.sha256(checked).hexdigest() if lfs else _git_hash(checked)
            if repo.cdn and lfs and not on_cdn:
                self.send_response(302)
                self.send_header("Location", f"{hub.cdn_url}/cdn/{match['repo']}/{match['file']}?signed=1")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            start = 0
            if (wanted := self.headers.get("Range")) and body:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{sha}"')
            if lfs:
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return None
            rest = data[start:]
            if hub.drop_after is not None:
                self.wfile.write(rest[: hub.drop_after])
                hub.drop_after = None
                self.close_connection = True
                return None
            if hub.stall_after is not None:
                self.wfile.write(rest[: hub.stall_after])
                self.wfile.flush()
                hub.release.wait(60)
                self.close_connection = True
                return None
            self.wfile.write(rest)
            return None

    return Handler


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    fake = FakeHub(url="", repos={})
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake)) for _ in ("hub", "cdn")]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url, fake.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    yield fake
    fake.release.set()
    for server in servers:
        server.shutdown()
        server.server_close()


def _fresh(hub: FakeHub, repos: dict[str, Repo]) -> None:
    hub.repos = repos
    hub.requests.clear()
    hub.cdn_authorization.clear()
    hub.drop_after = hub.stall_after = None
    hub.release.clear()


def _env(hub_url: str, models: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {
        **env,
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(models.parent / "hf-home"),  # no stored login of this machine
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "LLAMA_STACK_MODELS_DIR": str(models),
        "COLUMNS": "200",
        **extra,
    }


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamastack.cli.main", "model", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _cli_on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The command with stderr on a pseudo-terminal, as in a shell: progress bars show on terminals only."""
    import fcntl
    import pty
    import struct
    import termios

    main, replica = pty.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    process = subprocess.Popen(
        [sys.executable, "-m", "llamastack.cli.main", "model", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=replica,
    )
    os.close(replica)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the command closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    process.wait(timeout=120)
    reader.join(timeout=10)
    os.close(main)
    return process.returncode, stdout, b"".join(chunks).decode(errors="replace")


def _fake_gguf(size: int) -> bytes:
    return b"GGUF" + os.urandom(size - 4)


def test_download_shows_progress_verifies_and_lists(hub: FakeHub, tmp_path: Path) -> None:
    data = _fake_gguf(3 * 1024 * 1024)
    _fresh(hub, {GGUF_REPO: Repo({GGUF_FILE: data})})
    models = tmp_path / "models"
    env = _env(hub.url, models)

    code, stdout, terminal = _cli_on_a_terminal(env, "download", "Llama3.2-1B-Instruct")
    assert code == 0, terminal
    target = models / "Llama3.2-1B-Instruct" / GGUF_FILE
    assert target.read_bytes() == data
    # huggingface_hub's progress bar: the file's name, 100% and the size.
    assert GGUF_FILE in terminal and "100%" in terminal and "3.15M/3.15M" in terminal, terminal
    assert "INFERENCE_MODEL=Llama3.2-1B-Instruct" in stdout
    manifest = json.loads((models / "Llama3.2-1B-Instruct" / "download.json").read_text())
    assert manifest["revision"] == COMMIT and manifest["files"][GGUF_FILE]["size"] == len(data)
    assert not (models / "Llama3.2-1B-Instruct" / ".partial").exists()

    again = _cli(env, "download", "meta-llama/Llama-3.2-1B-Instruct")  # another name of the same model
    assert again.returncode == 0 and "already downloaded" in again.stdout
    assert len(hub.ranges(GGUF_FILE)) == 1  # the second run only asked for the metadata

    listed = _cli(env, "list", "--downloaded")
    assert listed.returncode == 0
    assert "Llama3.2-1B-Instruct" in listed.stdout and "3.0 MB" in listed.stdout
    assert GGUF_FILE in listed.stdout

    removed = _cli(env, "remove", "Llama3.2-1B-Instruct")
    assert removed.returncode == 0 and not target.exists()
    assert "No downloaded models" in _cli(env, "list", "--downloaded").stdout


def test_dropped_connection_resumes_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    """huggingface_hub retries in the same process from the bytes it wrote (it writes 10 MB chunks)."""
    data = _fake_gguf(CHUNK + 2_000_000)
    _fresh(hub, {GUARD_REPO: Repo({GUARD_FILE: data})})
    hub.drop_after = CHUNK + 1_000_000
    models = tmp_path / "models"

    done = _cli(_env(hub.url, models), "download", "Llama-Guard-3-1B")
    assert done.returncode == 0, done.stderr
    assert (models / "Llama-Guard-3-1B" / GUARD_FILE).read_bytes() == data
    assert hub.ranges(GUARD_FILE) == [None, f"bytes={CHUNK}-"]


def test_killed_download_resumes_on_the_next_run(hub: FakeHub, tmp_path: Path) -> None:
    data = _fake_gguf(2 * CHUNK + 1000)
    _fresh(hub, {GGUF_REPO: Repo({GGUF_FILE: data})})
    hub.stall_after = CHUNK + 1000  # the first chunk reaches the disk, then the hub hangs
    models = tmp_path / "models"
    env = _env(hub.url, models)
    partial_dir = models / "Llama3.2-1B-Instruct" / ".partial"

    first = subprocess.Popen(
        [sys.executable, "-m", "llamastack.cli.main", "model", "download", "Llama3.2-1B-Instruct"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(p.stat().st_size for p in partial_dir.glob("*.part")) < CHUNK:
            assert time.monotonic() < deadline and first.poll() is None, "the first download did not start"
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130 and "again to resume" in out
    assert not (models / "Llama3.2-1B-Instruct" / GGUF_FILE).exists()  # a partial file is never served
    hub.stall_after = None
    hub.release.set()

    second = _cli(env, "download", "Llama3.2-1B-Instruct")
    assert second.returncode == 0, second.stderr
    assert "resuming after" in second.stdout
    assert (models / "Llama3.2-1B-Instruct" / GGUF_FILE).read_bytes() == data
    assert hub.ranges(GGUF_FILE)[-1] == f"bytes={CHUNK}-"


def test_checksum_mismatch_is_an_error_and_keeps_nothing(hub: FakeHub, tmp_path: Path) -> None:
    _fresh(hub, {GGUF_REPO: Repo({GGUF_FILE: _fake_gguf(100_000)}, wrong_checksum=True)})
    models = tmp_path / "models"
    env = _env(hub.url, models)

    done = _cli(env, "download", "Llama3.2-1B-Instruct")
    assert done.returncode == 1
    assert "Checksum mismatch" in done.stderr and "Traceback" not in done.stderr
    folder = models / "Llama3.2-1B-Instruct"
    assert not (folder / GGUF_FILE).exists() and not (folder / "download.json").exists()
    assert not list(folder.rglob("*.part"))
    assert "No downloaded models" in _cli(env, "list", "--downloaded").stdout


def test_gated_repo_needs_hf_token_and_never_shows_it(hub: FakeHub, tmp_path: Path) -> None:
    """The Vision model is a folder: the file list comes from the repo API, top-level files only."""
    files: dict[str, bytes | Path] = {
        "config.json": b'{"model_type": "mllama"}',
        "model-00001-of-00002.safetensors": os.urandom(300_000),
        "model-00002-of-00002.safetensors": os.urandom(200_000),
        "README.md": b"# card",
        "original/consolidated.pth": os.urandom(1000),
    }
    _fresh(hub, {VISION_REPO: Repo(files, gated=True, cdn=True)})
    models = tmp_path / "models"

    anonymous = _cli(_env(hub.url, models), "download", "Llama3.2-11B-Vision-Instruct")
    assert anonymous.returncode == 1 and "Traceback" not in anonymous.stderr
    assert "HF_TOKEN" in anonymous.stderr and "licence" in anonymous.stderr

    wrong = _cli(
        _env(hub.url, models, HF_TOKEN="hf_wrong_token_1234"), "download", "Llama3.2-11B-Vision-Instruct"
    )
    assert wrong.returncode == 1 and "HF_TOKEN" in wrong.stderr
    assert "hf_wrong_token_1234" not in wrong.stdout + wrong.stderr

    done = _cli(_env(hub.url, models, HF_TOKEN=TOKEN), "download", "Llama3.2-11B-Vision-Instruct")
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    # The shards came from the CDN origin the hub redirected to, and the token stayed with the hub.
    assert hub.cdn_authorization == [None, None]
    folder = models / "Llama3.2-11B-Vision-Instruct"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "config.json",
        "download.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    shard = "model-00002-of-00002.safetensors"
    assert (folder / shard).read_bytes() == files[shard]


def test_unreachable_hub_and_unknown_names_say_what_to_do(tmp_path: Path) -> None:
    models = tmp_path / "models"
    down = _cli(_env(f"http://127.0.0.1:{free_port()}", models), "download", "Llama3.2-3B-Instruct")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert "Could not reach the Hugging Face hub" in down.stderr
    assert "HF_ENDPOINT" in down.stderr and "INFERENCE_MODEL_PATH" in down.stderr

    offline = _cli(_env("http://127.0.0.1:9", models, HF_HUB_OFFLINE="1"), "download", "Llama3.2-3B-Instruct")
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr

    unknown = _cli(_env("http://127.0.0.1:9", models), "download", "Llama3.2-1B-Instrukt")
    assert unknown.returncode == 1 and "Did you mean Llama3.2-1B-Instruct?" in unknown.stderr

    outside = _cli(
        _env("http://127.0.0.1:9", models), "download", "Llama3.2-1B-Instruct", "--file", "../x.gguf"
    )
    assert outside.returncode == 1 and "--file ../x.gguf" in outside.stderr


def test_inference_model_name_serves_the_downloaded_gguf(hub: FakeHub, tmp_path: Path) -> None:
    """SmolLM2's bytes stand in for the Llama 3.2 1B GGUF: what is proved is that the server finds
    and loads the download by the model's name alone, not anything about Llama 3.2 itself."""
    _fresh(hub, {GGUF_REPO: Repo({GGUF_FILE: Path(smollm2_path())})})
    models = tmp_path / "models"
    done = _cli(_env(hub.url, models), "download", "Llama3.2-1B-Instruct")
    assert done.returncode == 0, done.stderr

    server = start_server(
        tmp_path / "state",
        env={"INFERENCE_MODEL": "Llama3.2-1B-Instruct", "LLAMA_STACK_MODELS_DIR": str(models)},
    )
    try:
        model = httpx.get(f"{server.base_url}/v1/models/Llama3.2-1B-Instruct").json()
        assert model["metadata"]["gguf_file"] == str(models / "Llama3.2-1B-Instruct" / GGUF_FILE)
        r = httpx.post(
            f"{server.base_url}/v1/openai/v1/chat/completions",
            json={
                "model": "Llama3.2-1B-Instruct",
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 16,
                "temperature": 0,
            },
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].strip()
    finally:
        server.stop()


def test_inference_model_not_downloaded_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as info:
        start_server(
            tmp_path / "state",
            env={"INFERENCE_MODEL": "Llama3.2-3B-Instruct", "LLAMA_STACK_MODELS_DIR": str(tmp_path / "none")},
        )
    assert "llama-stack model download Llama3.2-3B-Instruct" in str(info.value)
