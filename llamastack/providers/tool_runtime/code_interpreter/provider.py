"""The builtin::code_interpreter tool group: one tool, `code_interpreter`, that runs Python 3 in a
sandbox (see sandbox.py and bubblewrap.py) and returns its output and the files it wrote. Without a
working sandbox the tool refuses to run code, unless the config allows running it unsandboxed."""

from __future__ import annotations

import base64
import logging
import signal
from typing import Any

from llamastack.stack.apis.tools import ToolDef, ToolGroup, ToolInvocationResult, ToolParameter
from llamastack.stack.errors import BadRequestError

from .bubblewrap import SandboxUnavailable
from .config import CodeInterpreterConfig
from .sandbox import Attachment, Limits, RunResult, Sandbox

log = logging.getLogger(__name__)

TOOL_NAME = "code_interpreter"
TIMEOUT_CODE = 124  # as coreutils `timeout`; a signal is 128 + its number, as in shells
UNAVAILABLE_CODE = 126  # as shells, for a command found but not runnable
_SIGNAL_REASONS = {signal.SIGXCPU: "CPU time limit exceeded", signal.SIGXFSZ: "file size limit exceeded"}

TOOL = ToolDef(
    name=TOOL_NAME,
    description="Runs Python 3 code (standard library only, no network) and returns its stdout and "
    "stderr. Print what you want to see. Files written to the current directory are returned.",
    parameters=[
        ToolParameter(name="code", parameter_type="string", description="The Python 3 code to run."),
    ],
)


def _limits(config: CodeInterpreterConfig) -> Limits:
    return Limits(
        timeout_s=config.timeout_s,
        memory_bytes=config.max_memory_mb * 2**20,
        output_bytes=config.max_output_kb * 2**10,
        file_bytes=config.max_file_mb * 2**20,
        processes=config.max_processes,
        open_files=config.max_open_files,
        max_attachments=config.max_attachments,
        attachment_bytes=int(config.max_attachment_mb * 2**20),
    )


def _failure(result: RunResult, timeout_s: float) -> tuple[str | None, int | None]:
    """error_message and error_code of a run (None, None when it succeeded)."""
    if result.timed_out:
        return f"timed out after {timeout_s:g} s", TIMEOUT_CODE
    code = result.exit_code or 0
    if code < 0:
        sig = signal.Signals(-code)
        reason = _SIGNAL_REASONS.get(sig)
        return f"killed by {sig.name}" + (f" ({reason})" if reason else ""), 128 - code
    if code > 0:
        return f"exit code {code}", code
    return None, None


def _section(name: str, text: str, dropped: int) -> list[str]:
    if not text and not dropped:
        return []
    lines = [f"[{name}]", text.rstrip("\n")]
    if dropped:
        lines.append(f"[{name} truncated: {dropped} more bytes]")
    return lines


def _describe(attachment: Attachment) -> str:
    return f"{attachment.filename} ({attachment.mime_type}, {len(attachment.data)} bytes)"


def format_content(result: RunResult, error: str | None) -> str:
    lines = _section("stdout", result.stdout, result.stdout_dropped)
    lines += _section("stderr", result.stderr, result.stderr_dropped)
    if error:
        lines.append(f"[{error}]")
    if result.attachments:
        lines.append("[files] " + ", ".join(_describe(a) for a in result.attachments))
    if result.skipped_files:
        lines.append(
            "[files not returned: over the count/size limit, or unreadable] "
            + ", ".join(result.skipped_files)
        )
    return "\n".join(lines) if lines else "[no output]"


def _metadata(result: RunResult) -> dict[str, Any]:
    return {
        "sandbox": result.sandbox,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "duration_ms": round(result.duration_s * 1000, 1),
        "stdout_truncated": result.stdout_dropped > 0,
        "stderr_truncated": result.stderr_dropped > 0,
        "attachments": [
            {
                "filename": a.filename,
                "mime_type": a.mime_type,
                "bytes": len(a.data),
                "data_base64": base64.b64encode(a.data).decode("ascii"),
            }
            for a in result.attachments
        ],
        "skipped_files": result.skipped_files,
    }


class CodeInterpreterRuntime:
    def __init__(self, config: CodeInterpreterConfig) -> None:
        self.config = config
        self.sandbox = Sandbox(
            config.python,
            _limits(config),
            isolation=config.isolation,
            allow_unsandboxed=config.allow_unsandboxed,
            uid=config.sandbox_uid,
        )

    async def initialize(self) -> None:
        kind = await self.sandbox.start()
        level = logging.INFO if kind == "bubblewrap" else logging.WARNING
        log.log(level, "code interpreter sandbox: %s", self.sandbox.describe())

    async def health(self) -> dict[str, str]:
        if self.sandbox.kind is None:
            return {"status": "Error", "sandbox": "unavailable", "message": self.sandbox.describe()}
        return {"status": "OK", "sandbox": self.sandbox.kind, "message": self.sandbox.describe()}

    async def register_toolgroup(self, group: ToolGroup) -> ToolGroup:
        return group

    async def unregister_toolgroup(self, group: ToolGroup) -> None:
        return None

    async def list_tools(self, group: ToolGroup) -> list[ToolDef]:
        return [TOOL]

    async def invoke(
        self, tool_name: str, kwargs: dict[str, Any], group: ToolGroup, provider_data: dict[str, Any] | None
    ) -> ToolInvocationResult:
        if tool_name != TOOL_NAME:
            raise BadRequestError(
                f"Tool '{tool_name}' is not served by the code interpreter; its only tool is '{TOOL_NAME}'."
            )
        code = kwargs.get("code")
        if not isinstance(code, str):
            raise BadRequestError(f"Tool '{TOOL_NAME}' needs the argument 'code' (a string of Python 3).")
        try:
            result = await self.sandbox.run(code)
        except SandboxUnavailable as exc:
            message = f"the code interpreter cannot run code: {exc}"
            return ToolInvocationResult(
                content=f"[not run: {message}]",
                error_message=message,
                error_code=UNAVAILABLE_CODE,
                metadata={"sandbox": "unavailable"},
            )
        error, error_code = _failure(result, self.config.timeout_s)
        return ToolInvocationResult(
            content=format_content(result, error),
            error_message=error,
            error_code=error_code,
            metadata=_metadata(result),
        )
