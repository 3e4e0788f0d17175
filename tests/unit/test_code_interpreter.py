"""inline::code-interpreter: real sandboxed subprocesses (bubblewrap), called through the provider."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llamastack.providers.tool_runtime.code_interpreter import bubblewrap, get_provider_impl, sandbox
from llamastack.providers.tool_runtime.code_interpreter.config import CodeInterpreterConfig
from llamastack.providers.tool_runtime.code_interpreter.provider import (
    TIMEOUT_CODE,
    TOOL_NAME,
    UNAVAILABLE_CODE,
    CodeInterpreterRuntime,
    _failure,
)
from llamastack.stack.apis.tools import ToolGroup, ToolInvocationResult
from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.errors import BadRequestError

GROUP = ToolGroup(
    identifier="builtin::code_interpreter",
    provider_id="code-interpreter",
    provider_resource_id="builtin::code_interpreter",
)
SANDBOX_UID = 65534


async def _provider(**config: Any) -> CodeInterpreterRuntime:
    return await get_provider_impl(CodeInterpreterConfig(**config), ProviderDeps())


async def _sandboxed(**config: Any) -> CodeInterpreterRuntime:
    """A provider whose code runs in bubblewrap; skips where this machine cannot give one."""
    provider = await _provider(**config)
    if provider.sandbox.kind != "bubblewrap":
        pytest.skip(
            "needs a working bubblewrap sandbox (scripts/install-system-deps installs bubblewrap): "
            f"{provider.sandbox.problem}"
        )
    return provider


async def _run(code: str, **config: Any) -> ToolInvocationResult:
    provider = await _sandboxed(**config)
    return await provider.invoke(TOOL_NAME, {"code": code}, GROUP, None)


def _without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where bubblewrap is not installed."""
    which = shutil.which
    monkeypatch.setattr(
        bubblewrap.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else which(name, *a, **k)
    )


def _text(result: ToolInvocationResult) -> str:
    assert isinstance(result.content, str)
    return result.content


def _live_sandbox_processes(scratch: str) -> list[int]:
    """Processes (not zombies) whose cwd is in this scratch dir (deleted or not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if cwd.startswith(scratch) and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


async def _assert_no_sandbox_processes(scratch: str) -> None:
    assert "llamastack-code-" in scratch
    for _ in range(50):  # SIGKILL is asynchronous: give the kernel a moment
        if not _live_sandbox_processes(scratch):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"sandbox processes still alive: {_live_sandbox_processes(scratch)}")


def _first_line(result: ToolInvocationResult) -> str:
    """The first line the code printed (the tests that need it print their cwd first)."""
    return _text(result).splitlines()[1]


# --- the tool -------------------------------------------------------------------------------------


async def test_list_tools_and_health() -> None:
    provider = await _sandboxed()
    assert await provider.register_toolgroup(GROUP) == GROUP
    (tool,) = await provider.list_tools(GROUP)
    assert tool.name == "code_interpreter"
    assert tool.description and "Python 3" in tool.description
    assert [(p.name, p.parameter_type, p.required) for p in tool.parameters or []] == [
        ("code", "string", True)
    ]
    health = await provider.health()
    assert health["status"] == "OK"
    assert health["sandbox"] == "bubblewrap"
    assert f"uid {SANDBOX_UID} inside" in health["message"]
    await provider.unregister_toolgroup(GROUP)


async def test_unknown_tool_and_bad_arguments_are_client_errors() -> None:
    provider = await _provider()
    with pytest.raises(BadRequestError, match="'web_search'"):
        await provider.invoke("web_search", {"code": "print(1)"}, GROUP, None)
    with pytest.raises(BadRequestError, match="'code'"):
        await provider.invoke(TOOL_NAME, {}, GROUP, None)
    with pytest.raises(BadRequestError, match="'code'"):
        await provider.invoke(TOOL_NAME, {"code": 42}, GROUP, None)


async def test_prints_come_back() -> None:
    result = await _run("print('hello')\nprint(6 * 7)")
    assert _text(result) == "[stdout]\nhello\n42"
    assert result.error_message is None and result.error_code is None
    assert result.metadata and result.metadata["exit_code"] == 0
    assert result.metadata["sandbox"] == "bubblewrap"


async def test_exception_gives_stderr_and_error_code() -> None:
    result = await _run("print('before')\n{}['missing']")
    text = _text(result)
    assert text.startswith("[stdout]\nbefore\n[stderr]\nTraceback (most recent call last):")
    assert 'File "<code>", line 2, in <module>' in text  # the user's own line, not the bootstrap's
    assert "<string>" not in text
    assert "KeyError: 'missing'" in text
    assert text.endswith("[exit code 1]")
    assert (result.error_message, result.error_code) == ("exit code 1", 1)


async def test_syntax_error_and_exit_codes() -> None:
    result = await _run("def f(:")
    assert "SyntaxError" in _text(result) and result.error_code == 1
    result = await _run("exit(3)")  # exit() exists although `site` is not loaded
    assert (result.error_message, result.error_code) == ("exit code 3", 3)


async def test_standard_library_works_but_site_packages_do_not_leak() -> None:
    result = await _run(
        "import json, sqlite3, decimal\nprint(json.dumps({'a': 1}))\n"
        "try:\n    import pydantic\nexcept ImportError:\n    print('no pydantic')"
    )
    assert _text(result) == '[stdout]\n{"a": 1}\nno pydantic'


async def test_output_is_capped() -> None:
    result = await _run("print('x' * 5000)\nimport sys; sys.stderr.write('e' * 5000)", max_output_kb=1)
    text = _text(result)
    assert "[stdout truncated: 3977 more bytes]" in text  # 5000 x + newline, 1024 kept
    assert "[stderr truncated: 3976 more bytes]" in text
    assert result.metadata and result.metadata["stdout_truncated"] and result.metadata["stderr_truncated"]


# --- limits ---------------------------------------------------------------------------------------


async def test_infinite_loop_times_out_and_is_killed() -> None:
    started = time.perf_counter()
    result = await _run("import os\nprint(os.getcwd())\nwhile True:\n    pass", timeout_s=1)
    elapsed = time.perf_counter() - started
    assert elapsed < 1 + 2.5
    assert (result.error_message, result.error_code) == ("timed out after 1 s", TIMEOUT_CODE)
    scratch = _first_line(result)  # unbuffered: what was printed before the kill survives
    assert _text(result) == f"[stdout]\n{scratch}\n[timed out after 1 s]"
    assert result.metadata and result.metadata["timed_out"] and result.metadata["exit_code"] is None
    await _assert_no_sandbox_processes(scratch)


async def test_cancelled_invocation_leaves_nothing_behind() -> None:
    before = set(Path(tempfile.gettempdir()).glob("llamastack-code-*"))
    provider = await _sandboxed(timeout_s=30)
    task = asyncio.create_task(provider.invoke(TOOL_NAME, {"code": "while True:\n    pass"}, GROUP, None))
    await asyncio.sleep(0.5)
    (root,) = set(Path(tempfile.gettempdir()).glob("llamastack-code-*")) - before
    assert _live_sandbox_processes(str(root))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _assert_no_sandbox_processes(str(root))
    assert set(Path(tempfile.gettempdir()).glob("llamastack-code-*")) <= before


def test_signals_are_named() -> None:
    result = sandbox.RunResult("", "", 0, 0, -signal.SIGXCPU, False, 1.0, "bubblewrap")
    assert _failure(result, 10) == ("killed by SIGXCPU (CPU time limit exceeded)", 128 + signal.SIGXCPU)
    result.exit_code = -signal.SIGKILL
    assert _failure(result, 10) == ("killed by SIGKILL", 137)


async def test_memory_bomb_fails_without_hurting_the_server() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    result = await _run("data = bytearray(2 * 2**30)\nprint('allocated')")
    assert "MemoryError" in _text(result) and "allocated" not in _text(result)
    assert result.error_code == 1
    assert resource.getrlimit(resource.RLIMIT_AS) == before  # the limit was set in the child only
    assert len(bytearray(64 * 2**20)) == 64 * 2**20


async def test_file_beyond_the_size_cap_fails() -> None:
    code = "with open('big.bin', 'wb') as f:\n    for _ in range(32):\n        f.write(b'x' * 2**20)"
    result = await _run(code, max_file_mb=16)
    text = _text(result)
    assert "OSError: [Errno 27] File too large" in text
    assert result.error_code == 1
    # the 16 MiB that were written are over the attachment cap: named, not returned
    assert result.metadata and result.metadata["skipped_files"] == ["big.bin"]
    assert result.metadata["attachments"] == []


_FORK_LOOP = """
import os, time
print(os.getcwd())
started = 0
try:
    for _ in range(500):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        started += 1
except OSError as exc:
    print('fork refused after', started, type(exc).__name__)
"""


async def test_fork_loop_is_refused_by_the_process_limit() -> None:
    """Also when the server runs as root: the code's uid is not root, and its user namespace its own."""
    result = await _run(_FORK_LOOP, max_processes=16)
    assert "fork refused after" in _text(result) and "BlockingIOError" in _text(result)
    started = int(_text(result).split("fork refused after ")[1].split()[0])
    assert started <= 16
    await _assert_no_sandbox_processes(_first_line(result))


async def test_fork_loop_dies_with_the_run() -> None:
    """Whatever the fork limit, every process the code started is killed when the run ends: after a
    normal exit of the main process, and after a timeout."""
    result = await _run(_FORK_LOOP.replace("range(500)", "range(40)"), timeout_s=5)
    assert result.error_code is None, _text(result)
    await _assert_no_sandbox_processes(_first_line(result))
    result = await _run(_FORK_LOOP.replace("range(500)", "range(40)") + "\ntime.sleep(60)", timeout_s=1)
    assert result.error_code == TIMEOUT_CODE
    await _assert_no_sandbox_processes(_first_line(result))


# --- isolation ------------------------------------------------------------------------------------


# --- isolation: one test per way out ----------------------------------------------------------------
# Each host-side target is made readable/writable by everyone, so that only the sandbox stops the code.


@pytest.fixture
def home_canary() -> Iterator[Path]:
    """A world-readable file in the server user's real home directory."""
    path = Path.home() / f".llamastack-canary-{uuid.uuid4().hex}"
    path.write_text("canary-home-secret")
    path.chmod(0o644)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


_TRY_READ = """
def attempt(path):
    try:
        with open(path) as f:
            return 'read ' + f.read()[:40]
    except OSError as exc:
        return type(exc).__name__
"""


async def test_cannot_read_a_canary_in_home_or_host_files(home_canary: Path, tmp_path: Path) -> None:
    other = tmp_path / "canary.txt"
    other.write_text("canary-tmp-secret")
    other.chmod(0o644)
    tmp_path.chmod(0o755)
    targets = [home_canary, other, Path("/etc/passwd"), Path(sys.prefix) / "pyvenv.cfg", Path(__file__)]
    code = _TRY_READ + "".join(f"print(attempt({str(t)!r}))\n" for t in targets)
    home = str(Path.home())
    code += f"import os\nprint(os.listdir({home!r}) if os.path.isdir({home!r}) else [])\n"
    code += "print('|'.join(sorted(os.listdir('/'))))"
    result = await _run(code)
    lines = _text(result).splitlines()[1:]
    assert lines[: len(targets)] == ["FileNotFoundError"] * len(targets), _text(result)
    home_listing, root_listing = lines[-2:]
    # Of the home directory, at most the way to an interpreter installed there (~/.pyenv/...)
    prefix = Path(os.path.realpath(sys.base_prefix))
    way = [prefix.relative_to(home).parts[0]] if prefix.is_relative_to(home) and home != "/" else []
    assert home == "/" or home_listing == repr(way)
    # Only the system runtime, the interpreter's install, /dev, /proc and /tmp (the scratch dir's root)
    expected = {d[1:] for d in bubblewrap.SYSTEM_DIRS if os.path.lexists(d)} | {"dev", "proc", "tmp"}
    expected |= {Path(os.path.realpath(sys.base_prefix)).parts[1], Path(tempfile.gettempdir()).parts[1]}
    assert set(root_listing.split("|")) == expected


async def test_cannot_write_outside_the_scratch_dir(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    open_dir.chmod(0o777)
    name = f"escaped-{uuid.uuid4().hex}"
    targets = [
        open_dir / name,
        Path(tempfile.gettempdir()) / name,
        Path(sys.base_prefix) / name,
        Path("/") / name,
    ]
    code = (
        "import os\n"
        f"for path in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print(type(exc).__name__)\n"
        "open('inside.txt', 'w').write('kept')"
    )
    result = await _run(code)
    for target in targets:
        assert not target.exists(), f"{target} was written from the sandbox: {_text(result)}"
    lines = _text(result).splitlines()[1:]
    assert lines[0] == "FileNotFoundError" and lines[2:4] == ["OSError", "OSError"]  # read-only file system
    # /tmp inside is a small tmpfs of the run's own: writable, gone with it (checked above on the host)
    assert lines[1] == f"wrote {targets[1]}"
    assert result.metadata and [a["filename"] for a in result.metadata["attachments"]] == ["inside.txt"]


async def test_fork_200_processes_is_refused_and_the_server_is_fine() -> None:
    result = await _run(_FORK_LOOP.replace("range(500)", "range(200)"), max_processes=32, timeout_s=5)
    text = _text(result)
    assert "fork refused after" in text and "BlockingIOError" in text, text
    assert int(text.split("fork refused after ")[1].split()[0]) < 32
    await _assert_no_sandbox_processes(_first_line(result))
    assert subprocess.run(["true"], check=False).returncode == 0  # the server's user can still fork
    assert _text(await _run("print('still here')")) == "[stdout]\nstill here"


async def test_cannot_open_a_socket_to_the_host(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    unix_path = str(tmp_path / "host.sock")
    abstract = f"\0llamastack-test-{uuid.uuid4().hex}"
    with (
        socket.socket() as tcp,
        socket.socket(socket.AF_UNIX) as unix,
        socket.socket(socket.AF_UNIX) as hidden,
    ):
        tcp.bind(("127.0.0.1", 0))
        unix.bind(unix_path)
        os.chmod(unix_path, 0o777)
        hidden.bind(abstract)
        for server in (tcp, unix, hidden):
            server.listen()
            server.setblocking(False)
        port = tcp.getsockname()[1]
        code = (
            "import socket\n"
            f"for family, address in [(socket.AF_INET, ('127.0.0.1', {port})),"
            " (socket.AF_INET, ('10.0.0.1', 80)),"
            f" (socket.AF_UNIX, {unix_path!r}), (socket.AF_UNIX, {abstract!r})]:\n"
            "    s = socket.socket(family)\n"
            "    s.settimeout(2)\n"
            "    try:\n"
            "        s.connect(address)\n"
            "        print('connected')\n"
            "    except OSError as exc:\n"
            "        print(type(exc).__name__)\n"
        )
        result = await _run(code)
        for server in (tcp, unix, hidden):
            with pytest.raises(BlockingIOError):
                server.accept()  # nobody connected
    assert _text(result).splitlines()[1:] == [
        "ConnectionRefusedError",  # the run's own loopback: nothing listens there
        "OSError",  # [Errno 101] Network is unreachable
        "FileNotFoundError",  # the host's socket file is not in the sandbox
        "ConnectionRefusedError",  # abstract sockets belong to the network namespace
    ], _text(result)


async def test_cannot_signal_the_server() -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        code = (
            "import os, signal\n"
            f"for target in ({os.getpid()}, -{os.getpgid(0)}):\n"
            "    try:\n"
            "        os.kill(target, signal.SIGUSR1)\n"
            "        print('sent')\n"
            "    except OSError as exc:\n"
            "        print(type(exc).__name__)\n"
        )
        result = await _run(code)
        await asyncio.sleep(0.2)  # a signal that got through would have been handled by now
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == []
    assert _text(result) == "[stdout]\nProcessLookupError\nProcessLookupError"


async def test_cannot_read_the_server_environ() -> None:
    own = Path(f"/proc/{os.getpid()}/environ").read_bytes()
    assert own  # what the code must not get
    code = (
        _TRY_READ
        + f"print(attempt('/proc/{os.getpid()}/environ'))\n"
        + f"print(attempt('/proc/{os.getpid()}/cmdline'))\n"
        + "import os\nprint(sorted(p for p in os.listdir('/proc') if p.isdigit()))"
    )
    result = await _run(code)
    lines = _text(result).splitlines()[1:]
    assert lines[:2] == ["FileNotFoundError", "FileNotFoundError"], _text(result)
    assert lines[2] == "['1', '2']"  # bwrap's reaper and the code: nothing of the host
    assert own.split(b"\0")[0].decode(errors="replace") not in _text(result)


async def test_runs_as_an_unprivileged_uid_on_the_host_too() -> None:
    code = (
        "import os, time\n"
        "print(os.getcwd())\n"
        "status = open('/proc/self/status').read()\n"
        "print(os.getuid(), os.getgid(), os.getgroups(),"
        " [l.split()[1] for l in status.splitlines() if l.startswith(('CapEff', 'NoNewPrivs'))])\n"
        "time.sleep(3)"
    )
    provider = await _sandboxed()
    task = asyncio.create_task(provider.invoke(TOOL_NAME, {"code": code}, GROUP, None))
    outside: set[int] = set()
    for _ in range(50):
        await asyncio.sleep(0.05)
        roots = list(Path(tempfile.gettempdir()).glob("llamastack-code-*/work"))
        for pid in [p for root in roots for p in _live_sandbox_processes(str(root))]:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap":
                    continue  # bwrap itself (the launcher, the PID namespace's reaper): not the code
                status = Path(f"/proc/{pid}/status").read_text()
                outside.add(
                    int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
                )
        if outside:
            break
    result = await task
    assert _text(result).splitlines()[2] == f"{SANDBOX_UID} {SANDBOX_UID} [] ['0000000000000000', '1']"
    assert outside == {SANDBOX_UID if os.geteuid() == 0 else os.geteuid()}
    assert 0 not in outside


# --- no sandbox ----------------------------------------------------------------------------------


async def test_without_bubblewrap_the_tool_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _without_bwrap(monkeypatch)
    provider = await _provider()  # start-up does not fail: the rest of the server works
    assert provider.sandbox.kind is None
    (tool,) = await provider.list_tools(GROUP)  # still listed
    assert tool.name == TOOL_NAME
    health = await provider.health()
    assert health["status"] == "Error" and health["sandbox"] == "unavailable"
    marker = tmp_path / "ran"
    result = await provider.invoke(TOOL_NAME, {"code": f"open({str(marker)!r}, 'w')"}, GROUP, None)
    assert not marker.exists()
    assert result.error_code == UNAVAILABLE_CODE
    assert result.error_message and "apt-get install bubblewrap" in result.error_message
    assert "allow_unsandboxed: true" in result.error_message
    assert _text(result) == f"[not run: {result.error_message}]"
    assert result.metadata == {"sandbox": "unavailable"}


async def test_unsandboxed_only_when_the_config_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_bwrap(monkeypatch)
    provider = await _provider(allow_unsandboxed=True)
    assert provider.sandbox.kind == "none"
    assert "unsandboxed" in (await provider.health())["message"]
    result = await provider.invoke(TOOL_NAME, {"code": "print(6 * 7)"}, GROUP, None)
    assert _text(result) == "[stdout]\n42"
    assert result.metadata and result.metadata["sandbox"] == "none"
    strict = await _provider(isolation="bubblewrap", allow_unsandboxed=True)  # bubblewrap or nothing
    assert strict.sandbox.kind is None
    result = await strict.invoke(TOOL_NAME, {"code": "print(1)"}, GROUP, None)
    assert result.error_code == UNAVAILABLE_CODE and "bubblewrap" in (result.error_message or "")
    assert (await _provider(isolation="none", allow_unsandboxed=True)).sandbox.kind == "none"


async def test_a_bubblewrap_that_cannot_start_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "bwrap"  # what bwrap prints where namespaces are not allowed
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    which = shutil.which
    monkeypatch.setattr(
        bubblewrap.shutil,
        "which",
        lambda name, *a, **k: str(fake) if name == "bwrap" else which(name, *a, **k),
    )
    provider = await _provider()
    assert provider.sandbox.kind is None
    result = await provider.invoke(TOOL_NAME, {"code": "print(1)"}, GROUP, None)
    assert result.error_code == UNAVAILABLE_CODE
    assert "bwrap: No permissions to create new namespace" in (result.error_message or "")


def test_config_makes_running_unsandboxed_explicit() -> None:
    with pytest.raises(ValidationError, match="allow_unsandboxed: true"):
        CodeInterpreterConfig(isolation="none")
    with pytest.raises(ValidationError, match="replaced by isolation"):
        CodeInterpreterConfig.model_validate({"network_isolation": "guard"})
    with pytest.raises(ValidationError):
        CodeInterpreterConfig(sandbox_uid=0)
    assert CodeInterpreterConfig().isolation == "auto" and not CodeInterpreterConfig().allow_unsandboxed


async def test_server_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-do-not-leak")
    code = (
        "import os\nprint(sorted(os.environ))\n"
        "print('sk-test' in open('/proc/self/environ').read())\n"
        "print(os.environ['HOME'] == os.environ['TMPDIR'] == os.environ['PWD'] == os.getcwd())"
    )
    result = await _run(code)  # PWD: set by bwrap's --chdir
    assert _text(result) == "[stdout]\n['HOME', 'LANG', 'LC_ALL', 'PATH', 'PWD', 'TMPDIR']\nFalse\nTrue"


async def test_files_come_back_as_attachments_and_the_scratch_dir_is_removed() -> None:
    code = (
        "import os\n"
        "os.makedirs('out')\n"
        "open('out/data.bin', 'wb').write(bytes(range(256)))\n"
        "open('report.csv', 'w').write('a,b\\n1,2\\n')\n"
        "os.symlink('/etc/hostname', 'link.txt')\n"  # not followed
        "print(os.getcwd())"
    )
    result = await _run(code)
    assert result.metadata
    scratch = Path(_text(result).splitlines()[1])
    attachments = {a["filename"]: a for a in result.metadata["attachments"]}
    assert set(attachments) == {"out/data.bin", "report.csv"}
    assert base64.b64decode(attachments["out/data.bin"]["data_base64"]) == bytes(range(256))
    assert attachments["out/data.bin"]["bytes"] == 256
    assert attachments["out/data.bin"]["mime_type"] == "application/octet-stream"
    assert base64.b64decode(attachments["report.csv"]["data_base64"]) == b"a,b\n1,2\n"
    assert attachments["report.csv"]["mime_type"] == "text/csv"
    assert "[files] out/data.bin (application/octet-stream, 256 bytes), report.csv (text/csv, 8 bytes)" in (
        _text(result)
    )
    assert scratch.name == "work" and not scratch.exists() and not scratch.parent.exists()


async def test_attachment_caps() -> None:
    code = "for i in range(4):\n    open(f'f{i}.txt', 'w').write('x' * 1000)"
    result = await _run(code, max_attachments=2)
    assert result.metadata
    assert [a["filename"] for a in result.metadata["attachments"]] == ["f0.txt", "f1.txt"]
    assert result.metadata["skipped_files"] == ["f2.txt", "f3.txt"]
    assert "[files not returned: over the count/size limit, or unreadable] f2.txt, f3.txt" in _text(result)


async def test_unreadable_scratch_dir_is_still_removed() -> None:
    result = await _run("import os\nos.makedirs('locked/inner')\nos.chmod('locked', 0)\nprint(os.getcwd())")
    scratch = Path(_text(result).splitlines()[1])
    assert not scratch.parent.exists()


async def test_three_invocations_in_parallel() -> None:
    provider = await _sandboxed()
    codes = [f"import time\ntime.sleep(0.5)\nprint({i} * 11)" for i in range(3)]
    started = time.perf_counter()
    results = await asyncio.gather(*(provider.invoke(TOOL_NAME, {"code": c}, GROUP, None) for c in codes))
    elapsed = time.perf_counter() - started
    assert [_text(r) for r in results] == ["[stdout]\n0", "[stdout]\n11", "[stdout]\n22"]
    assert elapsed < 1.4  # they overlapped: three in series take at least 1.5 s
