from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class MCPToolRuntimeConfig(BaseModel):
    connect_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Reaching an MCP server: the TCP connect, the protocol handshake and the tool listing.",
    )
    call_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest one tool call may run before it fails with 502."
    )

    @classmethod
    def sample_run_config(cls) -> dict[str, Any]:
        return {
            "connect_timeout_s": "${env.MCP_CONNECT_TIMEOUT_S:=10}",
            "call_timeout_s": "${env.MCP_CALL_TIMEOUT_S:=60}",
        }
