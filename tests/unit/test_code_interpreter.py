"""inline::code-interpreter: real subprocesses, called through the provider directly."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from llamastack.providers.tool_runtime.code_interpreter import get_provider_impl, sandbox
from llamastack.providers.tool_runtime.code_interpreter.config import CodeInterpreterConfig
from llamastack.providers.tool_runtime.code_interpreter.provider import (
    TIMEOUT_CODE,
    TOOL_NAME,
    CodeInterpreterRuntime,
    _failure,
)
from llamastack.stack.apis.tools import ToolGroup, ToolInvocationResult
from llamastack.stack.errors import BadRequestError, ConfigError

GROUP = ToolGroup(
    identifier="builtin::code_interpreter",
    provider_id="code-interpreter",
    provider_resource_id="builtin::code_interpreter",
)
IS_ROOT = os.geteuid() == 0


async def _provider(**config: Any) -> CodeInterpreterRuntime:
    return await get_provider_impl(CodeInterpreterConfig(**config), {})


async def _run(code: str, **config: Any) -> ToolInvocationResult:
    provider = await _provider(**config)
    return await provider.invoke(TOOL_NAME, {"code": code}, GROUP, None)


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
    provider = await _provider()
    assert await provider.register_toolgroup(GROUP) == GROUP
    (tool,) = await provider.list_tools(GROUP)
    assert tool.name == "code_interpreter"
    assert tool.description and "Python 3" in tool.description
    assert [(p.name, p.parameter_type, p.required) for p in tool.parameters or []] == [
        ("code", "string", True)
    ]
    health = await provider.health()
    assert health["status"] == "OK"
    assert health["network_isolation"] in ("namespace", "guard")
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
    assert result.metadata["network_isolation"] in ("namespace", "guard")


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
    provider = await _provider(timeout_s=30)
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
    result = sandbox.RunResult("", "", 0, 0, -signal.SIGXCPU, False, 1.0, "guard")
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


@pytest.mark.skipif(
    IS_ROOT,
    reason="RLIMIT_NPROC is not enforced for uid 0 (Linux exempts the root user, even inside a user "
    "namespace), and this runs as root; test_fork_loop_dies_with_the_run shows what still holds.",
)
async def test_fork_loop_is_refused_by_the_process_limit() -> None:
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


@pytest.mark.parametrize("mode", ["auto", "guard"])
async def test_network_is_refused(mode: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        )
        result = await _run(code, network_isolation=mode)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    text = _text(result)
    assert "connected" not in text.replace("network access", "")
    assert result.error_code == 1
    assert result.metadata
    if result.metadata["network_isolation"] == "guard":
        assert "PermissionError: network access is disabled in the code interpreter" in text
    else:
        assert "OSError: [Errno 101] Network is unreachable" in text


async def test_namespace_mode_cannot_see_or_signal_the_server() -> None:
    provider = await _provider()
    if not provider.sandbox.pid_namespace:
        pytest.skip("no PID namespace here (unshare --pid --mount-proc unavailable): guard mode can")
    code = f"import os\nprint(os.getpid(), os.path.exists('/proc/{os.getpid()}'))\nos.kill({os.getpid()}, 0)"
    result = await provider.invoke(TOOL_NAME, {"code": code}, GROUP, None)
    assert _text(result).startswith("[stdout]\n1 False\n")
    assert "ProcessLookupError" in _text(result)


async def test_guard_blocks_name_lookups_but_not_local_sockets() -> None:
    code = (
        "import asyncio, socket\n"
        "asyncio.run(asyncio.sleep(0))\n"  # the event loop's self-pipe is an AF_UNIX socketpair
        "a, b = socket.socketpair(); a.sendall(b'ok'); print(b.recv(2).decode())\n"
        "socket.getaddrinfo('example.com', 80)"
    )
    result = await _run(code, network_isolation="guard")
    assert _text(result).startswith("[stdout]\nok\n")
    assert "PermissionError: network access is disabled" in _text(result)


async def test_namespace_required_but_unavailable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(ConfigError, match="unshare"):
        await _provider(network_isolation="namespace")
    assert (await (await _provider(network_isolation="auto")).health())["network_isolation"] == "guard"


async def test_server_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-do-not-leak")
    code = (
        "import os\nprint(sorted(os.environ))\n"
        "print('sk-test' in open('/proc/self/environ').read())\n"
        "print(os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd())"
    )
    result = await _run(code)
    assert _text(result) == "[stdout]\n['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']\nFalse\nTrue"


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
    provider = await _provider()
    codes = [f"import time\ntime.sleep(0.5)\nprint({i} * 11)" for i in range(3)]
    started = time.perf_counter()
    results = await asyncio.gather(*(provider.invoke(TOOL_NAME, {"code": c}, GROUP, None) for c in codes))
    elapsed = time.perf_counter() - started
    assert [_text(r) for r in results] == ["[stdout]\n0", "[stdout]\n11", "[stdout]\n22"]
    assert elapsed < 1.4  # they overlapped: three in series take at least 1.5 s
