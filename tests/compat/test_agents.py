"""The Agents API through llama-stack-client 0.2.12's own Agent helper and raw client calls.

SmolLM2 is tiny; where a test needs the model to call a tool, tool_choice forces the call with a
grammar (on the first inference of the turn), so the flow is deterministic.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import redirect_stdout

import httpx
import llama_stack_client
import pytest
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.client_tool import client_tool
from llama_stack_client.lib.agents.event_logger import EventLogger

from conftest import CHAT_MODEL, EMBEDDING_MODEL, start_server

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


KB_CHUNKS = [
    {"content": "The secret project is code-named Blue Heron.", "metadata": {"document_id": "p"}},
    {"content": "Lunch is served at noon in the atrium.", "metadata": {"document_id": "l"}},
]
HEADER = "knowledge_search tool found"


@pytest.fixture()
def agent_kb(stack_client) -> Iterator[str]:
    stack_client.vector_dbs.register(vector_db_id="agent-kb", embedding_model=EMBEDDING_MODEL)
    stack_client.vector_io.insert(vector_db_id="agent-kb", chunks=KB_CHUNKS)
    yield "agent-kb"
    stack_client.vector_dbs.unregister("agent-kb")


def _search_step(turn):
    """The turn's first tool_execution step, checked to be one knowledge_search call and its answer."""
    kinds = _steps(turn)
    assert "memory_retrieval" not in kinds
    assert kinds[:2] == ["inference", "tool_execution"]
    step = turn.steps[1]
    assert len(step.tool_calls) == 1 and len(step.tool_responses) == 1
    call, response = step.tool_calls[0], step.tool_responses[0]
    assert call.tool_name == "knowledge_search" and isinstance(call.arguments["query"], str)
    assert response.call_id == call.call_id and response.tool_name == "knowledge_search"
    assert turn.steps[0].api_model_response.tool_calls[0].call_id == call.call_id
    meta = response.metadata
    assert set(meta) >= {"document_ids", "chunks", "scores"}
    assert len(meta["document_ids"]) == len(meta["chunks"]) == len(meta["scores"]) >= 1
    assert meta["scores"] == sorted(meta["scores"], reverse=True)
    texts = [item.text for item in response.content]
    assert texts[0] == f"{HEADER} {len(meta['chunks'])} chunks:\nBEGIN of knowledge_search tool results.\n"
    assert texts[-2] == "END of knowledge_search tool results.\n"
    assert texts[-1].startswith(
        f'The above results were retrieved to help answer the user\'s query: "{call.arguments["query"]}"'
    )
    for chunk, text in zip(meta["chunks"], texts[1:-2], strict=True):
        assert chunk in text
    return call, response


def test_rag_agent_calls_knowledge_search(stack_client, agent_kb: str) -> None:
    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        sampling_params=GREEDY,
        tools=[{"name": "builtin::rag", "args": {"vector_db_ids": [agent_kb]}}],
        # The model is made to call the tool on the first inference, then answers freely.
        tool_config={"tool_choice": "required"},
        max_infer_iters=3,
    )
    session_id = agent.create_session("rag")
    events = [
        c.event.payload
        for c in agent.create_turn(
            messages=[{"role": "user", "content": "What is the secret project called?"}],
            session_id=session_id,
            stream=True,
        )
    ]
    turn = events[-1].turn
    _, response = _search_step(turn)
    by_id = {c["metadata"]["document_id"]: c["content"] for c in KB_CHUNKS}
    for doc_id, chunk in zip(response.metadata["document_ids"], response.metadata["chunks"], strict=True):
        assert by_id[doc_id] == chunk  # only the agent's vector db was searched
    assert turn.steps[2].step_type == "inference"
    # The streamed tool_execution step: started, the call in progress, then completed with its response.
    step_id = turn.steps[1].step_id
    mine = [e for e in events if getattr(e, "step_id", None) == step_id]
    assert [e.event_type for e in mine] == ["step_start", "step_progress", "step_complete"]
    assert mine[1].delta.type == "tool_call" and mine[1].delta.parse_status == "in_progress"
    assert mine[1].delta.tool_call.call_id == turn.steps[1].tool_calls[0].call_id
    # The step is stored as streamed.
    stored = stack_client.agents.steps.retrieve(
        agent_id=agent.agent_id, session_id=session_id, turn_id=turn.turn_id, step_id=step_id
    ).step
    assert stored.tool_responses[0].metadata == response.metadata


def test_one_tool_of_a_group_by_group_slash_tool(stack_client, agent_kb: str) -> None:
    assert [t.identifier for t in stack_client.tools.list(toolgroup_id="builtin::rag/knowledge_search")] == [
        "knowledge_search"
    ]
    # The string form on the agent (args given on a turn) ...
    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        sampling_params=GREEDY,
        tools=["builtin::rag/knowledge_search"],
        tool_config={"tool_choice": "required"},
        max_infer_iters=2,
    )
    session_id = agent.create_session("one tool")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "What is the secret project called?"}],
        session_id=session_id,
        toolgroups=[{"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": [agent_kb]}}],
        stream=False,
    )
    _, response = _search_step(turn)
    assert set(response.metadata["document_ids"]) <= {"p", "l"}
    # ... and the form with args on an agent whose turn names other tool groups: the turn's
    # toolgroups replace the agent's for that turn, so only code_interpreter is offered.
    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 200},
        tools=[{"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": [agent_kb]}}],
        tool_config={"tool_choice": "required"},
        max_infer_iters=1,
    )
    session_id = agent.create_session("other tools")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "Run this Python code: print(6 * 7)"}],
        session_id=session_id,
        toolgroups=["builtin::code_interpreter/code_interpreter"],
        stream=False,
    )
    assert _steps(turn)[:1] == ["inference"]
    assert turn.steps[0].api_model_response.tool_calls[0].tool_name == "code_interpreter"


def test_documents_attached_to_a_turn_are_searched_by_knowledge_search(stack_client, agent_kb: str) -> None:
    door = "The front door of the house is painted green."
    # No toolgroups at all: attached documents still get the knowledge_search tool.
    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        sampling_params=GREEDY,
        tool_config={"tool_choice": "required"},
        max_infer_iters=2,
    )
    session_id = agent.create_session("docs")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "Which colour is the front door?"}],
        session_id=session_id,
        documents=[{"content": door, "mime_type": "text/plain"}],
        stream=False,
    )
    _, response = _search_step(turn)
    assert response.metadata["chunks"] == [door]
    assert response.metadata["document_ids"][0].startswith("doc-")
    # A later turn of the session searches the same documents, without attaching them again.
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "Tell me the colour of the front door again."}],
        session_id=session_id,
        stream=False,
    )
    _, again = _search_step(turn)
    assert again.metadata["chunks"] == [door]

    # With builtin::rag and args, knowledge_search searches the agent's db and the session's.
    agent = Agent(
        stack_client,
        model=CHAT_MODEL,
        instructions=INSTRUCTIONS,
        sampling_params=GREEDY,
        tools=[{"name": "builtin::rag", "args": {"vector_db_ids": [agent_kb]}}],
        tool_config={"tool_choice": "required"},
        max_infer_iters=2,
    )
    session_id = agent.create_session("docs and kb")
    turn = agent.create_turn(
        messages=[{"role": "user", "content": "Is the secret project code-named Blue Heron?"}],
        session_id=session_id,
        documents=[
            {"content": "The secret project's budget is ten thousand euros.", "mime_type": "text/plain"}
        ],
        stream=False,
    )
    _, response = _search_step(turn)
    ids = response.metadata["document_ids"]
    assert "p" in ids and any(i.startswith("doc-") for i in ids), ids


def test_unknown_tool_groups_and_tools_are_404(stack_client, http: httpx.Client) -> None:
    def create(toolgroups: list) -> httpx.Response:
        return http.post(
            "/v1/agents",
            json={"agent_config": {"model": CHAT_MODEL, "instructions": "x", "toolgroups": toolgroups}},
        )

    for entry in ("builtin::nope/knowledge_search", {"name": "builtin::nope", "args": {}}):
        r = create([entry])
        assert r.status_code == 404 and "'builtin::nope'" in r.json()["detail"], r.text
    r = create([{"name": "builtin::rag/no_such_tool", "args": {"vector_db_ids": ["x"]}}])
    assert r.status_code == 404, r.text
    assert "'no_such_tool'" in r.json()["detail"] and "'builtin::rag'" in r.json()["detail"]
    assert "knowledge_search" in r.json()["detail"]  # what the group does have
    r = http.get("/v1/tools", params={"toolgroup_id": "builtin::rag/no_such_tool"})
    assert r.status_code == 404 and "'no_such_tool'" in r.json()["detail"]
    with pytest.raises(llama_stack_client.NotFoundError) as info:
        Agent(stack_client, model=CHAT_MODEL, instructions="x", tools=["builtin::rag/no_such_tool"])
    assert "no_such_tool" in str(info.value)

    agent_id = create(["builtin::rag/knowledge_search"]).json()["agent_id"]
    try:
        session_id = http.post(f"/v1/agents/{agent_id}/session", json={"session_name": "s"}).json()[
            "session_id"
        ]
        for entry, named in (("builtin::nope/x", "'builtin::nope'"), ("builtin::rag/x", "'x'")):
            r = http.post(
                f"/v1/agents/{agent_id}/session/{session_id}/turn",
                json={
                    "messages": [{"role": "user", "content": "hi"}],
                    "toolgroups": [entry],
                    "stream": False,
                },
            )
            assert r.status_code == 404 and named in r.json()["detail"], r.text
    finally:
        http.delete(f"/v1/agents/{agent_id}")


@pytest.fixture(scope="module")
def memory_mode_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[llama_stack_client.LlamaStackClient]:
    """A server whose agents run with rag_mode: memory_retrieval (search before inference)."""
    server = start_server(tmp_path_factory.mktemp("memory-mode"), env={"AGENTS_RAG_MODE": "memory_retrieval"})
    try:
        yield llama_stack_client.LlamaStackClient(base_url=server.base_url, max_retries=0, timeout=120)
    finally:
        server.stop()


def test_memory_retrieval_mode_retrieves_before_answering(memory_mode_client) -> None:
    stack_client = memory_mode_client
    stack_client.vector_dbs.register(vector_db_id="agent-kb", embedding_model=EMBEDDING_MODEL)
    try:
        stack_client.vector_io.insert(vector_db_id="agent-kb", chunks=KB_CHUNKS)
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


def test_memory_retrieval_mode_retrieves_attached_documents(memory_mode_client) -> None:
    agent = Agent(memory_mode_client, model=CHAT_MODEL, instructions=INSTRUCTIONS, sampling_params=GREEDY)
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
