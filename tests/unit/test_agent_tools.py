"""How the agent loop treats a model's tool call whose arguments do not fit the tool: an error the
model sees as the tool's answer, never a crash of the turn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llamastack.providers.agents.local.config import LocalAgentsConfig
from llamastack.providers.agents.local.provider import LocalAgents, _check_arguments
from llamastack.stack.apis.inference.core import ToolSpec
from llamastack.stack.apis.inference.native import ToolCall
from llamastack.stack.datatypes import ProviderDeps

ADD = ToolSpec(
    name="add",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "minimum": 0}},
        "required": ["a", "b"],
    },
)


def test_argument_checks() -> None:
    assert _check_arguments(ADD, {"a": 1, "b": 2}) is None
    assert _check_arguments(ADD, {"a": 1}) == "missing required argument(s): b"
    assert "not of type 'integer'" in _check_arguments(ADD, {"a": "one", "b": 2})
    assert "minimum" in _check_arguments(ADD, {"a": 1, "b": -3}) or "less than" in _check_arguments(
        ADD, {"a": 1, "b": -3}
    )


async def test_bad_calls_become_error_responses(tmp_path: Path) -> None:
    unused: Any = object()  # never reached: every call below is refused before it would run
    agents = LocalAgents(
        LocalAgentsConfig(db_path=str(tmp_path / "agents.db")),
        ProviderDeps(inference=unused, models=unused, tool_runtime=unused, tool_groups=unused),
    )
    specs = {"add": ADD}
    cases = [
        (ToolCall(call_id="1", tool_name="add", arguments={"a": 1}), "missing required argument"),
        (ToolCall(call_id="2", tool_name="add", arguments={"a": "x", "b": 1}), "invalid arguments"),
        (ToolCall(call_id="3", tool_name="subtract", arguments={}), "unknown tool 'subtract'"),
        (ToolCall(call_id="4", tool_name="add", arguments="{not json"), "not valid JSON"),
    ]
    for call, expected in cases:
        response = await agents._execute(call, specs, {})
        assert response.call_id == call.call_id
        assert response.content.startswith("error:") and expected in response.content
    await agents.shutdown()
