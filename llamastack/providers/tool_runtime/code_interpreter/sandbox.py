"""Runs untrusted Python 3 in a sandbox with limits, and reports what happened.

Each run gets a fresh scratch directory (its cwd, HOME and TMPDIR, deleted afterwards), an environment
with nothing inherited from the server (no API keys), and ``python -I -S -B -u``: isolated mode, no
``site`` (only the standard library), no bytecode files, unbuffered output (what was printed before
a timeout still comes back).

Sandboxes (``isolation``):

* ``bubblewrap`` (see bubblewrap.py): its own mount, PID, network, IPC and UTS namespaces. The code sees
  only the read-only system and Python runtime, its code file and its scratch directory; runs as an
  unprivileged uid also when the server is root; has no network; cannot see or signal other processes.
* ``none``: a plain child process as the server's user, seeing what the server sees, with network.
  Only when the config says ``allow_unsandboxed: true``; never chosen silently.

When no sandbox can be set up the sandbox stays unavailable, and says why (``problem``).

Limits: a wall-clock timeout, after which the whole process group is killed (with bubblewrap, killing
bwrap takes its PID namespace down: everything the code started dies with it), and rlimits: CPU
seconds, address space, processes, size of any file written, open files, no core dumps. The bootstrap
sets them before the user code runs, rather than a ``preexec_fn``: that would make the server fork()
instead of vfork(), which with a 2 GiB model loaded stalls the event loop ~80 ms per run, and is unsafe
in a threaded process. In the sandbox the code has no CAP_SYS_RESOURCE: it cannot raise them.
RLIMIT_NPROC counts processes and threads per user namespace and uid; bubblewrap gives every run its
own user namespace and a uid that is not root (Linux does not enforce it for root): it limits each run.

This module uses the standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import mimetypes
import os
import resource
import shutil
import signal
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import bubblewrap
from .bubblewrap import Bubblewrap, Runtime, SandboxUnavailable

SandboxKind = Literal["bubblewrap", "none"]
Isolation = Literal["auto", "bubblewrap", "none"]

_CODE_FILE = "code.py"  # next to the scratch dir, not in it: never returned as an attachment
_DRAIN_S = 2.0  # after a kill, how long to wait for pipes held open by escaped processes
_PROBE_TIMEOUT_S = 10.0
_PATH = "/usr/local/bin:/usr/bin:/bin"
_PYTHON_FLAGS = ("-I", "-S", "-B", "-u")

# Runs as `python -I -S -B -u -c BOOTSTRAP <code file> <rlimits>`.
BOOTSTRAP = """
import sys


def _limit(spec):
    import resource

    for item in spec.split(","):
        res, soft, hard = map(int, item.split(":"))
        resource.setrlimit(res, (soft, hard))


def _print_exception(exc, tb, source):
    import linecache  # imported only now: linecache and traceback cost ~7 ms of start-up
    import traceback

    linecache.cache["<code>"] = (len(source), None, source.splitlines(True), "<code>")
    traceback.print_exception(type(exc), exc, tb)


def _run(path, limits):
    import builtins
    import os
    import sys  # local: the globals of __main__ are cleared for the user code below

    _limit(limits)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    sys.argv = ["<code>"]
    sys.path.insert(0, os.getcwd())
    builtins.exit = builtins.quit = sys.exit  # `site` (which defines them) is not loaded
    main = vars(sys.modules["__main__"])
    print_exception = _print_exception
    for name in [n for n in main if n not in ("__name__", "__doc__", "__builtins__", "__spec__")]:
        del main[name]
    try:
        code = compile(source, "<code>", "exec")
    except SyntaxError as exc:
        print_exception(exc, None, source)
        sys.exit(1)
    try:
        exec(code, main)
    except SystemExit:
        raise
    except BaseException as exc:
        print_exception(exc, exc.__traceback__.tb_next, source)  # without this frame
        sys.exit(1)


_run(sys.argv[1], sys.argv[2])
"""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    memory_bytes: int = 2**30
    output_bytes: int = 64 * 2**10  # per stream
    file_bytes: int = 16 * 2**20
    processes: int = 32
    open_files: int = 128
    max_attachments: int = 10
    attachment_bytes: int = 5 * 2**20  # all attachments together


@dataclass
class Attachment:
    filename: str  # relative to the scratch dir, with '/'
    mime_type: str
    data: bytes


@dataclass
class RunResult:
    stdout: str
    stderr: str
    stdout_dropped: int  # bytes past the output cap
    stderr_dropped: int
    exit_code: int | None  # negative: killed by that signal; None: timed out
    timed_out: bool
    duration_s: float
    sandbox: SandboxKind
    attachments: list[Attachment] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # over the attachment caps


class _Output(asyncio.Protocol):
    """One pipe from the child (our own pipe rather than asyncio's, so that `Process.wait()` does not
    wait for it, and we can close it while an escaped process still holds it). Keeps the first `cap`
    bytes and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None
        self.write_fd: int | None = None

    async def open(self) -> int:
        """The write end, for the child."""
        read_fd, self.write_fd = os.pipe()
        reader = os.fdopen(read_fd, "rb", buffering=0)
        self.transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: self, reader)
        return self.write_fd

    def close_write_end(self) -> None:
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def close(self) -> None:
        self.close_write_end()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        room = max(self.cap - len(self.data), 0)
        self.data += data[:room]
        self.dropped += max(len(data) - room, 0)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _own_threads() -> int:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return 1


def _rlimits(limits: Limits, kind: SandboxKind) -> str:
    """`resource:soft:hard,...` for the bootstrap, never above the server's own hard limits."""
    cpu_s = math.ceil(limits.timeout_s) + 1  # the wall clock normally wins; this catches threads
    nproc = limits.processes
    if kind == "none":  # counted over all processes and threads of the user, the server's included
        nproc += _own_threads()
    wanted = [
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),  # SIGXCPU at the soft limit, SIGKILL at the hard one
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    result = []
    for res, soft, hard in wanted:
        _, current = resource.getrlimit(res)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        result.append(f"{res}:{soft}:{hard}")
    return ",".join(result)


def _environment(work: Path) -> dict[str, str]:
    return {
        "HOME": str(work),
        "TMPDIR": str(work),
        "PATH": _PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _wait(proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Whether the process ran out of time."""
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        return True
    return False


def _read_regular(path: Path, limit: int) -> bytes | None:
    """The file's bytes if it is a regular file (symlinks are not followed) of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def _files_under(work: Path) -> list[tuple[str, Path]]:
    """(relative path, path) of every non-symlink file under `work`, sorted by relative path."""
    found = []
    for dirpath, _, filenames in os.walk(work):  # does not descend into symlinked dirs
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                found.append((path.relative_to(work).as_posix(), path))
    return sorted(found)


def collect_files(work: Path, max_count: int, max_bytes: int) -> tuple[list[Attachment], list[str]]:
    """Regular files under `work` within the caps, and the paths of those left out."""
    found: list[Attachment] = []
    skipped: list[str] = []
    total = 0
    for rel, path in _files_under(work):
        data = _read_regular(path, max_bytes - total) if len(found) < max_count else None
        if data is None:
            if path.is_file():
                skipped.append(rel)
            continue
        total += len(data)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        found.append(Attachment(filename=rel, mime_type=mime, data=data))
    return found, skipped


def remove_tree(root: Path) -> None:
    """Deletes the run's directory even when the code made parts of it unreadable."""
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            if not os.path.islink(sub):
                with contextlib.suppress(OSError):
                    os.chmod(sub, 0o700)
    shutil.rmtree(root, ignore_errors=True)


async def _spawn(
    argv: list[str], work: Path, out: _Output, err: _Output, timeout_s: float
) -> tuple[int | None, bool]:
    """Runs to the end or the timeout: (exit status, or None when timed out; whether it timed out)."""
    stdout, stderr = await out.open(), await err.open()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=work,
            env=_environment(work),
            start_new_session=True,  # its own process group: one killpg ends everything it started
        )
    finally:
        out.close_write_end()
        err.close_write_end()
    try:
        timed_out = await _wait(proc, timeout_s)
    finally:
        _kill_group(proc.pid)  # on timeout, cancellation, and children left behind by a normal exit
    # Output still in the pipes arrives now; a process that left the group may hold them open.
    await asyncio.wait([out.closed, err.closed], timeout=_DRAIN_S)
    return (None if timed_out else proc.returncode), timed_out


_PROBE = "import os, socket; print(os.getuid(), ','.join(n for _, n in socket.if_nameindex()))"
_NOT_WORKING = (
    "bubblewrap is installed but cannot set up the sandbox here ({detail}). It needs mount, PID and "
    "network namespaces, and user namespaces for an unprivileged user (sysctl user.max_user_namespaces "
    "above 0; on Ubuntu an AppArmor profile allowing bwrap); inside a container, run it with them allowed"
)
_runtimes: dict[str, Runtime] = {}  # per interpreter, for the life of the server
_verdicts: dict[tuple[str, str, int, int], str | None] = {}  # (bwrap, python, uid, euid) -> problem


class Sandbox:
    def __init__(
        self,
        python: str,
        limits: Limits,
        isolation: Isolation = "auto",
        allow_unsandboxed: bool = False,
        uid: int = 65534,
    ) -> None:
        self.python = python
        self.limits = limits
        self.isolation = isolation
        self.allow_unsandboxed = allow_unsandboxed
        self.uid = uid
        self.kind: SandboxKind | None = None  # None: unavailable, see `problem`
        self.problem: str | None = None
        self.bubblewrap: Bubblewrap | None = None

    def describe(self) -> str:
        if self.kind == "bubblewrap" and self.bubblewrap:
            return self.bubblewrap.describe
        if self.kind == "none":
            return (
                "none: code runs unsandboxed as the server's user, with its files and network "
                f"(allow_unsandboxed is set; {self.problem or 'isolation: none'})"
            )
        return f"unavailable, the tool refuses to run code: {self.problem}"

    async def start(self) -> SandboxKind | None:
        """Chooses the sandbox once; never raises for a missing one (the tool then refuses to run)."""
        if self.isolation != "none":
            try:
                self.bubblewrap = await self._working_bubblewrap()
                self.kind = "bubblewrap"
                return self.kind
            except SandboxUnavailable as exc:
                self.problem = f"no sandbox: {exc}"
        if self.isolation == "bubblewrap":
            return None
        if self.allow_unsandboxed:
            self.kind = "none"
        elif self.isolation == "none":
            self.problem = "isolation 'none' needs allow_unsandboxed: true"
        else:
            self.problem = f"{self.problem}; or set allow_unsandboxed: true to run code unsandboxed"
        return self.kind

    async def _working_bubblewrap(self) -> Bubblewrap:
        runtime = _runtimes.get(self.python) or await bubblewrap.find_runtime(self.python)
        _runtimes[self.python] = runtime
        setup = bubblewrap.build(runtime, self.uid)
        key = (setup.bwrap, runtime.executable, self.uid, os.geteuid())
        if key not in _verdicts:
            _verdicts[key] = await self._probe(setup)
        if _verdicts[key]:
            raise SandboxUnavailable(_verdicts[key])
        return setup

    async def _probe(self, setup: Bubblewrap) -> str | None:
        """Why bubblewrap does not work here, or None when a run inside it is what it should be."""
        limits = Limits(timeout_s=_PROBE_TIMEOUT_S, max_attachments=0)
        try:
            result = await self._run_in(_PROBE, setup, limits)
        except OSError as exc:
            return _NOT_WORKING.format(detail=str(exc))
        if result.timed_out:
            return _NOT_WORKING.format(detail="a trial run timed out")
        if result.exit_code != 0 or result.stdout.split() != [str(self.uid), "lo"]:
            lines = result.stderr.strip() or result.stdout.strip() or f"exit code {result.exit_code}"
            return _NOT_WORKING.format(detail=lines.splitlines()[-1])
        return None

    async def run(self, code: str) -> RunResult:
        """Raises SandboxUnavailable when there is no sandbox (and running without one is not allowed)."""
        if self.kind is None:
            raise SandboxUnavailable(self.problem or "the sandbox was not started")
        return await self._run_in(code, self.bubblewrap if self.kind == "bubblewrap" else None, self.limits)

    async def _run_in(self, code: str, setup: Bubblewrap | None, limits: Limits) -> RunResult:
        root = Path(tempfile.mkdtemp(prefix="llamastack-code-"))  # 0700: only the server gets in
        try:
            work = root / "work"
            work.mkdir()
            code_file = root / _CODE_FILE
            code_file.write_text(code, encoding="utf-8")
            code_file.chmod(0o444)
            if setup is not None and setup.drop:  # the code runs as another host uid: it owns the scratch
                os.chown(work, setup.uid, setup.uid)
            return await self._execute(code_file, work, setup, limits)
        finally:
            await asyncio.to_thread(remove_tree, root)

    async def _execute(
        self, code_file: Path, work: Path, setup: Bubblewrap | None, limits: Limits
    ) -> RunResult:
        kind: SandboxKind = "none" if setup is None else "bubblewrap"
        prefix, python = [], self.python
        if setup is not None:
            prefix = setup.argv(str(work), str(code_file), tmpfs_bytes=limits.file_bytes)
            python = setup.runtime.executable
        argv = [
            *prefix,
            python,
            *_PYTHON_FLAGS,
            *("-c", BOOTSTRAP),
            str(code_file),
            _rlimits(limits, kind),
        ]
        out, err = _Output(limits.output_bytes), _Output(limits.output_bytes)
        try:
            started = time.perf_counter()
            returncode, timed_out = await _spawn(argv, work, out, err, limits.timeout_s)
            duration = time.perf_counter() - started
        finally:
            out.close()
            err.close()
        attachments, skipped = await asyncio.to_thread(
            collect_files, work, limits.max_attachments, limits.attachment_bytes
        )
        return RunResult(
            stdout=out.text(),
            stderr=err.text(),
            stdout_dropped=out.dropped,
            stderr_dropped=err.dropped,
            exit_code=returncode,
            timed_out=timed_out,
            duration_s=duration,
            sandbox=kind,
            attachments=attachments,
            skipped_files=skipped,
        )
