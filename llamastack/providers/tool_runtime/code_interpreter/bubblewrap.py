"""The bubblewrap (`bwrap`) command line that confines one run of the code interpreter.

What the code sees: a fresh root holding only the system runtime read-only (``/usr`` and the ``/bin``,
``/lib*`` links or directories), the interpreter's own install read-only when it lives elsewhere
(e.g. ``~/.pyenv/versions/3.11.7``) with its site-packages covered by an empty directory, a fresh
``/proc`` of its own PID namespace, a minimal ``/dev``, small tmpfs ``/tmp`` and ``/dev/shm``, its
code file read-only and its scratch directory read-write (at their host paths). Nothing else of the
host: no ``/etc``, no home directories, no state directories, no venv.

Namespaces: mount, PID (bwrap's reaper is pid 1; when it dies everything in the namespace dies),
network (only a loopback of its own), IPC, UTS and, where the kernel has it, cgroup.

Who the code runs as:

* server not root: ``--unshare-user --uid N``: uid N inside a user namespace, the server's own
  unprivileged uid outside, no capabilities, and ``--disable-userns`` (no nested user namespaces).
* server root: a user namespace made by root would map the code to host root, whom Linux exempts
  from RLIMIT_NPROC. So bwrap, as root, builds the mounts and namespaces (it can reach an interpreter
  under ``/root``), then ``setpriv`` switches to host uid/gid N (no groups, no capabilities,
  no_new_privs) and ``unshare --user`` gives the run a user namespace of its own.

Either way the code's processes are counted per run (RLIMIT_NPROC applies per user namespace and uid,
and the uid is not root), and every mount is nosuid.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import PurePosixPath

SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# The system runtime, bound read-only where it is a directory, recreated where it is a symlink.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_RUNTIME_PROBE_TIMEOUT_S = 10.0
_RUNTIME_PROBE = """
import json, os, sys, sysconfig
base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
        "installed_base": sys.base_prefix, "installed_platbase": sys.base_exec_prefix}
paths = sysconfig.get_paths(vars=base)
print(json.dumps({
    "executable": os.path.realpath(sys.executable),
    "prefixes": [os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)],
    "site": [os.path.realpath(paths[k]) for k in ("purelib", "platlib")],
}))
"""


class SandboxUnavailable(Exception):
    """No working sandbox; the message says why and what to do."""


@dataclass(frozen=True)
class Runtime:
    """What the interpreter needs to start, as it reports itself (a venv's python is a symlink to the
    base install, which is what runs: with -I -S the venv would add nothing)."""

    executable: str
    prefixes: tuple[str, ...]
    site_dirs: tuple[str, ...]  # hidden: with -I -S they are not on sys.path, nor reachable by hand


async def find_runtime(python: str) -> Runtime:
    try:
        proc = await asyncio.create_subprocess_exec(
            python,
            *("-I", "-S", "-c", _RUNTIME_PROBE),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": SEARCH_PATH, "LC_ALL": "C.UTF-8"},
        )
        out, err = await asyncio.wait_for(proc.communicate(), _RUNTIME_PROBE_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise SandboxUnavailable(f"the interpreter '{python}' does not start: {exc}") from None
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise SandboxUnavailable(f"the interpreter '{python}' does not start: {detail[0]}")
    found = json.loads(out)
    return Runtime(
        executable=found["executable"],
        prefixes=tuple(dict.fromkeys(found["prefixes"])),
        site_dirs=tuple(dict.fromkeys(found["site"])),
    )


def _under(path: PurePosixPath, roots: list[PurePosixPath]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


class _Mounts:
    """bwrap mount arguments, in order, creating the missing parents of every destination with mode
    0755 (bwrap's own are 0700, which a dropped uid could not traverse)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.trees: list[PurePosixPath] = []  # bound from the host: everything below exists
        self.dirs: set[PurePosixPath] = {PurePosixPath("/")}  # made or mounted on

    def _parents(self, dest: PurePosixPath) -> None:
        for parent in reversed(dest.parents):
            if parent not in self.dirs and not _under(parent, self.trees):
                self.args += ["--perms", "0755", "--dir", str(parent)]
                self.dirs.add(parent)

    def add(self, option: str, dest: str, *, source: str | None = None, before: tuple[str, ...] = ()) -> None:
        path = PurePosixPath(dest)
        self._parents(path)
        self.args += [*before, option, *([source] if source is not None else []), dest]
        if source is not None:  # a bind, or a symlink (what it points to is bound, or missing)
            self.trees.append(path)
        else:
            self.dirs.add(path)

    def covered(self, path: str) -> bool:
        return _under(PurePosixPath(path), self.trees)

    def copy(self) -> _Mounts:
        other = _Mounts()
        other.args, other.trees, other.dirs = list(self.args), list(self.trees), set(self.dirs)
        return other


@dataclass(frozen=True)
class Bubblewrap:
    bwrap: str
    runtime: Runtime
    uid: int
    drop: tuple[str, ...]  # as root: the setpriv + unshare commands that run the code as `uid`
    runtime_mounts: _Mounts  # the same for every run

    @property
    def describe(self) -> str:
        outside = f"host uid {self.uid}" if self.drop else f"the server's uid {os.geteuid()} outside"
        return (
            f"bubblewrap ({self.bwrap}): uid {self.uid} inside, {outside}; sees only its scratch dir "
            "and a read-only Python runtime; no network"
        )

    def argv(self, work: str, code_file: str, tmpfs_bytes: int) -> list[str]:
        """The command prefix for one run; the interpreter's argv follows it."""
        mounts = self.runtime_mounts.copy()
        mounts.add("--proc", "/proc")
        mounts.add("--dev", "/dev")
        mounts.add("--tmpfs", "/dev/shm", before=("--perms", "01777", "--size", str(tmpfs_bytes)))
        mounts.args += ["--remount-ro", "/dev"]  # the tmpfs bwrap makes for /dev: not for writing
        mounts.add("--tmpfs", "/tmp", before=("--perms", "01777", "--size", str(tmpfs_bytes)))
        mounts.add("--bind", work, source=work)
        mounts.add("--ro-bind", code_file, source=code_file)
        if self.drop:
            namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
            namespaces += ["--unshare-cgroup-try", "--cap-drop", "ALL"]
            namespaces += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # for setpriv only
        else:
            namespaces = ["--unshare-all", "--unshare-user", "--disable-userns"]
            namespaces += ["--uid", str(self.uid), "--gid", str(self.uid)]
        return [
            self.bwrap,
            *namespaces,
            # No --new-session (it costs ~8 ms a run): the server starts bwrap in a session of its own,
            # so the code has no controlling terminal to push input into.
            *("--die-with-parent", "--hostname", "sandbox"),
            *mounts.args,
            *("--remount-ro", "/", "--chdir", work, "--"),
            *self.drop,
        ]


def _tool(name: str, package: str) -> str:
    found = shutil.which(name, path=SEARCH_PATH)
    if not found:
        raise SandboxUnavailable(
            f"`{name}` is not installed: install the `{package}` package "
            f"(Debian/Ubuntu: apt-get install {package}; Fedora: dnf install {package})"
        )
    return found


def build(runtime: Runtime, uid: int) -> Bubblewrap:
    """The bwrap set-up for this host and interpreter; raises SandboxUnavailable naming what is missing."""
    bwrap = _tool("bwrap", "bubblewrap")
    drop: tuple[str, ...] = ()
    commands = [runtime.executable]  # run inside, so they must be in what it shows
    if os.geteuid() == 0:
        setpriv, unshare = _tool("setpriv", "util-linux"), _tool("unshare", "util-linux")
        drop = (
            setpriv,
            *(f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--no-new-privs"),
            "--",
            unshare,
            *("--user", f"--map-user={uid}", f"--map-group={uid}", "--"),
        )
        commands += [setpriv, unshare]
    mounts = _Mounts()
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            mounts.add("--symlink", path, source=os.readlink(path))
        elif os.path.isdir(path):
            mounts.add("--ro-bind", path, source=path)
    executable_dir = os.path.dirname(runtime.executable)
    for prefix in (*runtime.prefixes, executable_dir):
        if os.path.isdir(prefix) and not mounts.covered(prefix):
            mounts.add("--ro-bind", prefix, source=prefix)
    for site in runtime.site_dirs:
        if os.path.isdir(site) and mounts.covered(site):
            mounts.add("--tmpfs", site)
            mounts.args += ["--remount-ro", site]
    for command in commands:
        if not mounts.covered(os.path.realpath(command)):
            raise SandboxUnavailable(f"{command} is outside the directories the sandbox shows")
    return Bubblewrap(bwrap=bwrap, runtime=runtime, uid=uid, drop=drop, runtime_mounts=mounts)
