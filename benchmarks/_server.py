"""What the benchmark scripts share: starting `llama-stack run local` on loopback, and percentiles."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from llamastack.stack.machine import machine_busy_s


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def cli_path() -> str:
    beside = Path(sys.executable).parent / "llama-stack"
    found = str(beside) if beside.exists() else shutil.which("llama-stack")
    if not found:
        raise SystemExit("The llama-stack command was not found.")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of one process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pids: list[int], quiet_s: float = 0.5, at_least_s: float = 1.5, timeout_s: float = 20.0) -> float:
    """Waits at least `at_least_s`, then until the processes are idle for `quiet_s` (under 2% of a
    core together), and returns the wait. A server that just became healthy still does deferred
    start-up work (it imports and opens what its first requests did not need, from a second after
    it is up); measured meanwhile, the requests' tail shows that work instead of steady serving."""
    start = time.perf_counter()
    time.sleep(at_least_s)
    while time.perf_counter() - start < timeout_s:
        before = sum(process_cpu_s(pid) for pid in pids)
        time.sleep(quiet_s)
        if sum(process_cpu_s(pid) for pid in pids) - before < 0.02 * quiet_s:
            break
    return time.perf_counter() - start


@dataclass
class Server:
    base_url: str
    startup_s: float
    proc: subprocess.Popen[bytes]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.01)
    raise TimeoutError(f"server not healthy after {timeout_s:.0f}s (log: {log})")


@contextlib.contextmanager
def running_server(
    work_dir: Path, threads: int | None = None, timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Spawn `llama-stack run local` on a free loopback port with its own state dir; always stopped."""
    extra = env or {}
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work_dir))
    log = work_dir / f"server-{port}.log"
    env = {**os.environ, "LLAMA_STACK_STATE_DIR": str(state), **extra}
    env.pop("CHROMA_URL", None)  # only the inline stores: no chroma server is started here
    if threads is not None:
        env["LLAMA_CPP_N_THREADS"] = str(threads)
    cmd = [cli_path(), "run", "local", "--port", str(port), "--host", "127.0.0.1"]
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, f"{base}/v1/health", log, timeout_s)
        yield Server(base, time.perf_counter() - start, proc)
    finally:
        _stop(proc)


wait_healthy = _wait_healthy  # for other servers the benchmarks start (llama-cpp-python's)
stop_process = _stop


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat; 0 elsewhere)."""
    return machine_busy_s() or 0.0


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the server it started)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def noise_note(busy0: float, own0: float, wall0: float) -> str:
    """Call after the server has been stopped (and so reaped): its CPU then counts as this process's."""
    wall = time.perf_counter() - wall0
    other = max(0.0, (busy_cpu_s() - busy0) - (own_cpu_s() - own0))
    return (
        f"CPU used by other processes during the run: {other:.1f} core-s over {wall:.0f} s "
        f"({100 * other / wall:.0f}% of one core); figures are noisy if this is much above ~5%"
    )
