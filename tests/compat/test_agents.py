"""The Agents API through llama-stack-client 0.2.12's own Agent helper and raw client calls.

SmolLM2 is tiny; where a test needs the model to call a tool, tool_choice forces the call with a
grammar (on the first inference of the turn), so the flow is deterministic.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import httpx
import llama_stack_client
import pytest
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.client_tool import client_tool
from llama_stack_client.lib.agents.event_logger import EventLogger

from conftest import CHAT_MODEL, EMBEDDING_MODEL

pytestmark = pytest.mark.integration

GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 40}
INSTRUCTIONS = "You are a helpful assistant."


def _steps(turn) -> list[str]:
    return [s.step_type for s in turn.steps]


def test_agent_helper_streams_and_event_logger_prints(stack_client) -> None:
    agent = Agent(stack_client, model=CHAT_MODEL, instructions=INSTRUCTIONS, sampling_params=GREEDY)
    session_id = agent.create_session("chat")
    stream = agent.create_turn(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        session_id=session_id,
        stream=True,
    )
    out = io.StringIO()
    with redirect_stdout(out):
        for log in EventLogger().log(stream):
            log.print()
    assert "inference>" in out.getvalue()
    assert "Paris" in out.getvalue()
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "And the capital of Germany?"}],
        session_id=session_id,
        stream=False,
    )
    assert _steps(turn) == ["inference"]
    assert turn.output_message.content
    session = stack_client.agents.session.retrieve(session_id=session_id, agent_id=agent.agent_id)
    assert len(session.turns) == 2
    assert session.turns[0].input_messages[0].content == "What is the capital of France?"


def test_raw_stream_event_shapes(stack_client) -> None:
    agent_id = stack_client.agents.create(
        agent_config={"model": CHAT_MODEL, "instructions": INSTRUCTIONS, "sampling_params": GREEDY}
    ).agent_id
    session_id = stack_client.agents.session.create(agent_id=agent_id, session_name="s").session_id
    events = [
        c.event.payload
        for c in stack_client.agents.turn.create(
            agent_id=agent_id,
            session_id=session_id,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
    ]
    kinds = [e.event_type for e in events]
    assert kinds[0] == "turn_start" and kinds[-1] == "turn_complete"
    assert kinds[1] == "step_start" and events[1].step_type == "inference"
    assert "step_progress" in kinds and "step_complete" in kinds
    turn = events[-1].turn
    step = stack_client.agents.steps.retrieve(
        agent_id=agent_id, session_id=session_id, turn_id=turn.turn_id, step_id=turn.steps[0].step_id
    )
    assert step.step.step_type == "inference"
    assert stack_client.agents.turn.retrieve(
        agent_id=agent_id, session_id=session_id, turn_id=turn.turn_id
    ).turn_id


def test_rag_agent_retrieves_before_answering(stack_client) -> None:
    stack_client.vector_dbs.register(vector_db_id="agent-kb", embedding_model=EMBEDDING_MODEL)
    try:
        stack_client.vector_io.insert(
            vector_db_id="agent-kb",
            chunks=[
                {"content": "The secret project is code-named Blue Heron.", "metadata": {"document_id": "p"}},
                {"content": "Lunch is served at noon in the atrium.", "metadata": {"document_id": "l"}},
            ],
        )
        agent = Agent(
            stack_client,
            model=CHAT_MODEL,
            instructions=INSTRUCTIONS,
            sampling_params=GREEDY,
            tools=[{"name": "builtin::rag", "args": {"vector_db_ids": ["agent-kb"]}}],
        )
        session_id = agent.create_session("rag")
        turn = agent.create_turn(
            messages=[{"role": "user", "content": "What is the secret project called?"}],
            session_id=session_id,
            stream=False,
        )
        assert _steps(turn) == ["memory_retrieval", "inference"]
        memory = turn.steps[0]
        assert memory.vector_db_ids == "agent-kb"
        inserted = "".join(i.text for i in memory.inserted_context)
        assert "Blue Heron" in inserted
    finally:
        stack_client.vector_dbs.unregister("agent-kb")


def test_documents_attached_to_a_turn_are_retrieved(stack_client) -> None:
    agent = Agent(stack_client, model=CHAT_MODEL, instructions=INSTRUCTIONS, sampling_params=GREEDY)
    session_id = agent.create_session("docs")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "Which colour is the front door?"}],
        session_id=session_id,
        documents=[{"content": "The front door of the house is painted green.", "mime_type": "text/plain"}],
        stream=False,
    )
    assert _steps(turn)[0] == "memory_retrieval"
    assert "painted green" in "".join(i.text for i in turn.steps[0].inserted_context)


def test_client_tool_turn_awaits_and_resumes(stack_client) -> None:
    calls: list[str] = []

    @client_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city.

        :param city: the name of the city
        """
        calls.append(city)
        return f"Sunny and 21 degrees in {city}."

    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        sampling_params=GREEDY,
        tools=[get_weather],
        tool_config={"tool_choice": "required"},
    )
    session_id = agent.create_session("weather")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        session_id=session_id,
        stream=False,
    )
    assert len(calls) == 1  # the helper ran the tool on the client and resumed the turn
    kinds = _steps(turn)
    assert kinds[:3] == ["inference", "tool_execution", "inference"]
    execution = turn.steps[1]
    assert execution.tool_calls[0].tool_name == "get_weather"
    assert "Sunny and 21 degrees" in str(execution.tool_responses[0].content)


def test_input_shield_blocks_the_turn(stack_client) -> None:
    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        sampling_params=GREEDY,
        input_shields=["code-scanner"],
    )
    session_id = agent.create_session("guarded")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "```python\nimport os\nos.system('rm -rf ' + path)\n```"}],
        session_id=session_id,
        stream=False,
    )
    assert _steps(turn) == ["shield_call"]
    assert turn.steps[0].violation.metadata["violation_type"]
    assert turn.output_message.content == "Sorry, I found security concerns in the code."
    fine = agent.create_turn(
        messages=[{"role": "user", "content": "Hello"}], session_id=session_id, stream=False
    )
    assert _steps(fine) == ["shield_call", "inference"]
    assert fine.steps[0].violation is None


def test_output_shield_replaces_an_unsafe_answer(stack_client) -> None:
    insecure = "```python\\nimport subprocess\\nsubprocess.call(cmd, shell=True)\\n```"
    agent_id = stack_client.agents.create(
        agent_config={
            "model": CHAT_MODEL,
            "instructions": INSTRUCTIONS,
            "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 60},
            "output_shields": ["code-scanner"],
            # A grammar makes the model write exactly this insecure snippet.
            "response_format": {"type": "grammar", "bnf": {"root": f'root ::= "{insecure}"'}},
        }
    ).agent_id
    session_id = stack_client.agents.session.create(agent_id=agent_id, session_name="s").session_id
    turn = stack_client.agents.turn.create(
        agent_id=agent_id,
        session_id=session_id,
        messages=[{"role": "user", "content": "Run a command"}],
        stream=False,
    )
    assert _steps(turn) == ["inference", "shield_call"]
    assert "shell=True" in turn.steps[0].api_model_response.content
    assert turn.steps[1].violation.violation_level == "error"
    assert turn.output_message.content == "Sorry, I found security concerns in the code."


def test_bad_agent_requests(stack_client, base_url: str) -> None:
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.agents.create(agent_config={"model": "no-such-model", "instructions": "x"})
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.agents.create(
            agent_config={"model": CHAT_MODEL, "instructions": "x", "input_shields": ["no-such-shield"]}
        )
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.agents.create(
            agent_config={"model": CHAT_MODEL, "instructions": "x", "toolgroups": ["nope::x"]}
        )
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.agents.session.create(agent_id="nope", session_name="s")
    agent_id = stack_client.agents.create(agent_config={"model": CHAT_MODEL, "instructions": "x"}).agent_id
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.agents.turn.create(
            agent_id=agent_id, session_id="nope", messages=[{"role": "user", "content": "hi"}], stream=False
        )
    with pytest.raises(llama_stack_client.BadRequestError):
        stack_client.agents.turn.create(agent_id=agent_id, session_id="nope", messages=[], stream=False)
    stack_client.agents.delete(agent_id)
    # llama-stack-client 0.2.12 has no agents.retrieve; ask over HTTP.
    assert httpx.get(f"{base_url}/v1/agents/{agent_id}").status_code == 404


def test_mcp_tool_group_and_an_agent_using_it(stack_client, mcp_url: str) -> None:
    stack_client.toolgroups.register(
        toolgroup_id="mcp::fixture", provider_id="model-context-protocol", mcp_endpoint={"uri": mcp_url}
    )
    try:
        tools = {t.identifier for t in stack_client.tools.list(toolgroup_id="mcp::fixture")}
        assert {"add", "echo"} <= tools
        result = stack_client.tool_runtime.invoke_tool(tool_name="add", kwargs={"a": 2, "b": 3})
        assert "5" in str(result.content)
        agent = Agent(
            stack_client,
            model=CHAT_MODEL,
            instructions=INSTRUCTIONS,
            sampling_params=GREEDY,
            tools=["mcp::fixture"],
            tool_config={"tool_choice": "echo"},
        )
        session_id = agent.create_session("mcp")
        turn = agent.create_turn(
            messages=[{"role": "user", "content": "Echo the word llama."}],
            session_id=session_id,
            stream=False,
        )
        kinds = _steps(turn)
        assert kinds[:2] == ["inference", "tool_execution"]
        call = turn.steps[1].tool_calls[0]
        response = turn.steps[1].tool_responses[0]
        assert call.tool_name == "echo"
        expected = call.arguments["text"] * int(call.arguments.get("times", 1))
        assert str(response.content).count(expected) >= 1 or expected in str(response.content)
    finally:
        stack_client.toolgroups.unregister("mcp::fixture")


def test_code_interpreter_turn_and_max_infer_iters(stack_client) -> None:
    direct = stack_client.tool_runtime.invoke_tool(
        tool_name="code_interpreter",
        kwargs={"code": "open('out.txt', 'w').write('hi')\nprint(6 * 7)"},
    )
    if (direct.metadata or {}).get("sandbox") == "unavailable":
        pytest.skip(f"needs the code interpreter's sandbox (bubblewrap): {direct.error_message}")
    assert "42" in str(direct.content)
    assert direct.metadata["attachments"][0]["filename"] == "out.txt"

    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        tools=["builtin::code_interpreter"],
        tool_config={"tool_choice": "code_interpreter"},
        max_infer_iters=1,
        # Room for the model's code: a call cut off by max_tokens is not a call.
        sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 400},
    )
    session_id = agent.create_session("code")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "Run this Python code: print(6 * 7)"}],
        session_id=session_id,
        stream=False,
    )
    # One inference (forced to call the tool), the execution, then the loop bound ends the turn.
    assert _steps(turn) == ["inference", "tool_execution"]
    assert turn.output_message.stop_reason == "out_of_tokens"
    execution = turn.steps[1]
    assert execution.tool_calls[0].tool_name == "code_interpreter"
    assert isinstance(execution.tool_calls[0].arguments["code"], str)
    assert str(execution.tool_responses[0].content)  # stdout/stderr of whatever the model wrote
