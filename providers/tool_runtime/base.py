"""What a tool_runtime provider implements.

A provider serves tool groups (``builtin::rag``, ``builtin::code_interpreter``, ``mcp::docs``...):
it checks a group when it is registered, lists the group's tools, and runs them. ``provider_data``
is the per-request ``X-LlamaStack-Provider-Data`` header (e.g. API keys), already parsed.
"""

from __future__ import annotations

from typing import Any, Protocol

from llamastack.stack.apis.tools import ToolDef, ToolGroup, ToolInvocationResult


class ToolRuntimeProvider(Protocol):
    async def register_toolgroup(self, group: ToolGroup) -> ToolGroup: ...

    async def unregister_toolgroup(self, group: ToolGroup) -> None: ...

    async def list_tools(self, group: ToolGroup) -> list[ToolDef]: ...

    async def invoke(
        self, tool_name: str, kwargs: dict[str, Any], group: ToolGroup, provider_data: dict[str, Any] | None
    ) -> ToolInvocationResult:
        """Runs one tool. A tool that fails returns error_message/error_code (the agent shows the model
        the error); only a client mistake (unknown tool, bad arguments) raises a typed 4xx error."""
        ...
