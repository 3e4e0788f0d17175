"""Runs untrusted Python 3 in a child process with limits, and reports what happened.

Each run gets a fresh scratch directory (its cwd, HOME and TMPDIR, deleted afterwards), an environment
with nothing inherited from the server (no API keys), and ``python -I -S -B -u``: isolated mode, no
``site`` (the standard library works, the server's site-packages do not leak in), no bytecode files,
unbuffered output (what was printed before a timeout still comes back).

Limits: a wall-clock timeout, after which the whole process group is killed (so is whatever is left of
it when the main process exits), and rlimits: CPU seconds, address space, processes, size of any file
written, open files, no core dumps. The bootstrap sets them before the user code runs, rather than a
``preexec_fn``: that would make the server fork() instead of vfork(), which with a 2 GiB model loaded
stalls the event loop ~80 ms per run, and is unsafe in a threaded process. Lowered hard limits cannot be
raised again without CAP_SYS_RESOURCE, which the code never has in a user namespace (in ``guard`` mode
a root server's code does have it, as it would after a ``preexec_fn`` too).

Network, best effort without privileges, chosen once per interpreter at start-up and cached:

* ``namespace``: ``unshare --map-root-user --net`` puts the code in its own user and network
  namespaces, where the only interface is a loopback that is down: a kernel-enforced boundary. Where
  possible also ``--pid --fork --kill-child --mount-proc``: the code runs as pid 1 of its own PID
  namespace, sees only its own processes in /proc, cannot signal the server, and every process it
  started dies with it. (As a namespace's init it ignores signals it sends itself for which it has no
  handler; RLIMIT_CPU then kills it one second after the soft limit.)
* ``guard``: when unprivileged user namespaces are unavailable, a bootstrap replaces the ``socket``
  module's constructors and resolvers with functions raising ``PermissionError`` before the user code
  runs. This is a guard against accidental use, NOT a security boundary: ctypes, ``_socket``, a fresh
  interpreter started with ``subprocess``, or any binary on PATH can bypass it. In this mode the code
  also runs as the server's user in the server's PID namespace: it can signal the server and read
  ``/proc/<server pid>/environ`` (the server's environment at start-up).

Neither mode isolates the filesystem: the code can read and write whatever the server's user can.
RLIMIT_NPROC counts all processes and threads of the user and is not enforced by Linux for uid 0, not
even inside a user namespace: a server running as root has no fork limit beyond the timeout and the
kills.

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
from typing import Literal, cast

NetworkIsolation = Literal["namespace", "guard"]

NETWORK_DISABLED = "network access is disabled in the code interpreter"
_CODE_FILE = "code.py"  # next to the scratch dir, not in it: never returned as an attachment
_DRAIN_S = 2.0  # after a kill, how long to wait for pipes held open by escaped processes
_PROBE_TIMEOUT_S = 10.0
_PATH = "/usr/local/bin:/usr/bin:/bin"

# Runs as `python -I -S -B -u -c BOOTSTRAP <code file> <namespace|guard> <rlimits>`.
BOOTSTRAP = f'''
import sys


def _limit(spec):
    import resource

    for item in spec.split(","):
        res, soft, hard = map(int, item.split(":"))
        resource.setrlimit(res, (soft, hard))


def _guard_network():
    import _socket
    import socket

    def denied(*args, **kwargs):
        raise PermissionError({NETWORK_DISABLED!r})

    class GuardedSocket(socket.socket):
        """Only AF_UNIX sockets (asyncio's self-pipe, socketpair) may be made."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.family != socket.AF_UNIX:
                self.close()
                denied()

    socket.socket = socket.SocketType = GuardedSocket  # (the socket class itself uses _socket.socket)
    for name in ("create_connection", "create_server", "getaddrinfo", "gethostbyname",
                 "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        setattr(socket, name, denied)
        if hasattr(_socket, name):
            setattr(_socket, name, denied)


def _print_exception(exc, tb, source):
    import linecache  # imported only now: linecache and traceback cost ~7 ms of start-up
    import traceback

    linecache.cache["<code>"] = (len(source), None, source.splitlines(True), "<code>")
    traceback.print_exception(type(exc), exc, tb)


def _run(path, mode, limits):
    import builtins
    import os
    import sys  # local: the globals of __main__ are cleared for the user code below

    _limit(limits)
    if mode == "guard":
        _guard_network()
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


_run(sys.argv[1], sys.argv[2], sys.argv[3])
'''


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
    network_isolation: NetworkIsolation
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


def _rlimits(limits: Limits, mode: NetworkIsolation) -> str:
    """`resource:soft:hard,...` for the bootstrap, never above the server's own hard limits."""
    cpu_s = math.ceil(limits.timeout_s) + 1  # the wall clock normally wins; this catches threads
    nproc = limits.processes
    if mode == "guard":  # counted over all processes and threads of the user, the server's included
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


# `unshare` options, strongest first. The first adds a PID namespace with its own /proc: the code cannot
# see or signal the server (or read its /proc entries), and everything it started dies with it.
_NAMESPACES: tuple[tuple[str, ...], ...] = (
    ("--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"),
    ("--map-root-user", "--net"),
)
_PROBE = "import os, socket; print(os.getpid(), ','.join(n for _, n in socket.if_nameindex()))"
_probes: dict[tuple[str, str], tuple[str, ...] | None] = {}  # (unshare, python) -> options that work


class Sandbox:
    def __init__(
        self,
        python: str,
        limits: Limits,
        network: Literal["auto", "namespace", "guard"] = "auto",
    ) -> None:
        self.python = python
        self.limits = limits
        self.network = network
        self.unshare = shutil.which("unshare", path=_PATH)
        self.namespace_options: tuple[str, ...] | None = None
        self.network_isolation: NetworkIsolation = "guard"

    @property
    def pid_namespace(self) -> bool:
        return self.namespace_options is not None and "--pid" in self.namespace_options

    async def start(self) -> NetworkIsolation:
        """Chooses the network isolation, probing `unshare` once per interpreter. Raises RuntimeError
        when `namespace` was asked for and does not work here."""
        if self.network != "guard":
            self.namespace_options = await self._probe()
        if self.namespace_options is None and self.network == "namespace":
            raise RuntimeError(
                "network_isolation 'namespace' needs `unshare --net --map-root-user` to work "
                "unprivileged (util-linux, user namespaces enabled); it does not here."
            )
        self.network_isolation = "guard" if self.namespace_options is None else "namespace"
        return self.network_isolation

    async def _probe(self) -> tuple[str, ...] | None:
        if not self.unshare:
            return None
        key = (self.unshare, self.python)
        if key not in _probes:
            _probes[key] = None
            limits = Limits(timeout_s=_PROBE_TIMEOUT_S, max_attachments=0)
            for options in _NAMESPACES:
                try:
                    result = await self._run_in(_PROBE, [self.unshare, *options], "namespace", limits)
                except OSError:
                    break
                pid, _, interfaces = result.stdout.strip().partition(" ")
                if result.exit_code == 0 and interfaces == "lo" and (pid == "1") == ("--pid" in options):
                    _probes[key] = options
                    break
        return _probes[key]

    async def run(self, code: str) -> RunResult:
        prefix = [] if self.namespace_options is None else [cast(str, self.unshare), *self.namespace_options]
        return await self._run_in(code, prefix, self.network_isolation, self.limits)

    async def _run_in(
        self, code: str, prefix: list[str], mode: NetworkIsolation, limits: Limits
    ) -> RunResult:
        root = Path(tempfile.mkdtemp(prefix="llamastack-code-"))
        try:
            work = root / "work"
            work.mkdir()
            (root / _CODE_FILE).write_text(code, encoding="utf-8")
            return await self._execute(root, work, prefix, mode, limits)
        finally:
            await asyncio.to_thread(remove_tree, root)

    async def _execute(
        self, root: Path, work: Path, prefix: list[str], mode: NetworkIsolation, limits: Limits
    ) -> RunResult:
        argv = [
            *prefix,
            self.python,
            *("-I", "-S", "-B", "-u", "-c", BOOTSTRAP),
            str(root / _CODE_FILE),
            mode,
            _rlimits(limits, mode),
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
            network_isolation=mode,
            attachments=attachments,
            skipped_files=skipped,
        )
