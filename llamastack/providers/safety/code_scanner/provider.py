"""Scans the Python in the last message (code blocks, code-interpreter calls, or the message itself
when it is Python) with Bandit's security checks: shell injection, eval/exec, weak crypto,
hard-coded secrets, unsafe deserialisation, and so on."""

from __future__ import annotations

import ast
import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

from llamastack.stack.apis.common import content_to_text
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.safety import RunShieldResponse, SafetyViolation, Shield, ViolationLevel
from llamastack.stack.library_imports import library_imports

from .config import CodeScannerConfig

_RANK = {"UNDEFINED": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}
_LEVEL = {"LOW": ViolationLevel.info, "MEDIUM": ViolationLevel.warn, "HIGH": ViolationLevel.error}
_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)```", re.DOTALL)
USER_MESSAGE = "Sorry, I found security concerns in the code."


def code_snippets(message: n.Message) -> list[str]:
    """The Python worth scanning in one message."""
    snippets = []
    if isinstance(message, n.CompletionMessage):
        for call in message.tool_calls or []:
            args = call.arguments if isinstance(call.arguments, dict) else {}
            if isinstance(args.get("code"), str):
                snippets.append(args["code"])
    text = content_to_text(message.content)
    fenced = [
        m.group("code")
        for m in _FENCE.finditer(text)
        if m.group("lang").lower() in ("", "py", "python", "python3")
    ]
    if fenced:
        return snippets + fenced
    if "\n" in text.strip() or "(" in text:  # plain prose rarely parses; a one-word reply is not code
        try:
            ast.parse(text)
            snippets.append(text)
        except (SyntaxError, ValueError):
            pass
    return snippets


class CodeScannerSafety:
    def __init__(self, config: CodeScannerConfig) -> None:
        self.config = config

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def register_shield(self, shield: Shield) -> Shield:
        return shield

    async def unregister_shield(self, shield: Shield) -> None:
        return None

    def _scan(self, snippets: list[str]) -> list[dict[str, Any]]:
        with library_imports:
            from bandit.core import config as bandit_config
            from bandit.core import manager

        findings = []
        conf = bandit_config.BanditConfig()
        with tempfile.TemporaryDirectory(prefix="code-scan-") as tmp:
            files = []
            for i, code in enumerate(snippets):
                path = Path(tmp) / f"snippet_{i}.py"
                path.write_text(code)
                files.append(str(path))
            scanner = manager.BanditManager(conf, "file", quiet=True)
            scanner.discover_files(files)
            scanner.run_tests()
            for issue in scanner.get_issue_list():
                if issue.test_id in self.config.skip_tests:
                    continue
                if _RANK[issue.severity] < _RANK[self.config.min_severity]:
                    continue
                if _RANK[issue.confidence] < _RANK[self.config.min_confidence]:
                    continue
                findings.append(
                    {
                        "test_id": issue.test_id,
                        "issue": issue.text,
                        "severity": issue.severity,
                        "confidence": issue.confidence,
                        "line": issue.lineno,
                    }
                )
        return findings

    async def run_shield(
        self, shield: Shield, messages: list[n.Message], params: dict[str, Any]
    ) -> RunShieldResponse:
        snippets = code_snippets(messages[-1])
        if not snippets:
            return RunShieldResponse(violation=None)
        findings = await asyncio.to_thread(self._scan, snippets)
        if not findings:
            return RunShieldResponse(violation=None)
        worst = max(findings, key=lambda f: _RANK[f["severity"]])["severity"]
        return RunShieldResponse(
            violation=SafetyViolation(
                violation_level=_LEVEL[worst],
                user_message=USER_MESSAGE,
                metadata={
                    "violation_type": ",".join(dict.fromkeys(f["test_id"] for f in findings)),
                    "findings": findings,
                },
            )
        )
