"""The MCP tool runtime against a real MCP server (tests/mcp_server_fixture.py) on 127.0.0.1, over
both transports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llamastack.providers.tool_runtime.mcp import get_provider_impl
from llamastack.providers.tool_runtime.mcp.config import MCPToolRuntimeConfig
from llamastack.providers.tool_runtime.mcp.provider import MCPToolRuntime, _json_type, _tool_def
from llamastack.stack.apis.common import URL, ImageContentItem, TextContentItem, content_to_text
from llamastack.stack.apis.tools import ToolGroup
from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.errors import BadRequestError, NotFoundError, UpstreamError
from llamastack.stack.outbound import OutboundConfig, OutboundPolicy, OutboundRefusedError

from conftest import free_port

FIXTURE = Path(__file__).resolve().parents[1] / "mcp_server_fixture.py"
TRANSPORTS = ("sse", "streamable-http")
# The fixtures listen on 127.0.0.1, which the default outbound policy refuses: allow that address.
LOOPBACK = OutboundPolicy(OutboundConfig(allow_hosts=["127.0.0.1"]))


@dataclass
class FixtureServer:
    transport: str
    port: int
    log_path: Path
    require_header: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        path = "/sse" if self.transport == "sse" else "/mcp"
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FixtureServer:
        command = [sys.executable, str(FIXTURE), "--port", str(self.port), "--transport", self.transport]
        if self.require_header:
            command += ["--require-header", self.require_header]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"MCP fixture exited with {self.process.returncode}:\n{self.log()}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)  # any HTTP answer: it is serving
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"MCP fixture did not answer in 30 s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _serve(tmp: Path, transport: str, require_header: str | None = None) -> FixtureServer:
    port = free_port()
    return FixtureServer(transport, port, tmp / f"mcp-{transport}-{port}.log", require_header).start()


@pytest.fixture(scope="module", params=TRANSPORTS)
def mcp_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FixtureServer]:
    server = _serve(tmp_path_factory.mktemp("mcp"), request.param)
    yield server
    server.stop()


@pytest.fixture()
def runtime() -> MCPToolRuntime:
    return MCPToolRuntime(MCPToolRuntimeConfig(), LOOPBACK)


def _group(uri: str | None, **args: Any) -> ToolGroup:
    return ToolGroup(
        identifier="mcp::fixture",
        provider_id="model-context-protocol",
        mcp_endpoint=URL(uri=uri) if uri else None,
        args=args or None,
    )


# --- registration ----------------------------------------------------------------------------------


async def test_register_validates_by_listing(runtime: MCPToolRuntime, mcp_server: FixtureServer) -> None:
    group = _group(mcp_server.uri)
    assert await runtime.register_toolgroup(group) == group
    await runtime.unregister_toolgroup(group)


async def test_register_needs_mcp_endpoint(runtime: MCPToolRuntime) -> None:
    with pytest.raises(BadRequestError, match="mcp_endpoint"):
        await runtime.register_toolgroup(_group(None))


async def test_register_rejects_unknown_transport_and_non_http_urls(runtime: MCPToolRuntime) -> None:
    with pytest.raises(BadRequestError, match=r"args\.transport"):
        await runtime.register_toolgroup(_group("http://127.0.0.1:1/mcp", transport="websocket"))
    with pytest.raises(BadRequestError, match="http"):
        await runtime.register_toolgroup(_group("stdio:///usr/bin/server"))


async def test_register_unreachable_server_is_bad_request(runtime: MCPToolRuntime) -> None:
    uri = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(BadRequestError, match=rf"^cannot reach MCP server at {uri}: ConnectError"):
        await runtime.register_toolgroup(_group(uri))
    assert time.perf_counter() - started < 5


async def test_register_wrong_path_names_the_http_status(
    runtime: MCPToolRuntime, mcp_server: FixtureServer
) -> None:
    uri = f"http://127.0.0.1:{mcp_server.port}/nowhere/sse"
    if mcp_server.transport == "streamable-http":
        uri = f"http://127.0.0.1:{mcp_server.port}/nowhere"
    with pytest.raises(BadRequestError, match=r"cannot reach MCP server at .*HTTP 404"):
        await runtime.register_toolgroup(_group(uri))


async def test_transport_can_be_forced(runtime: MCPToolRuntime, mcp_server: FixtureServer) -> None:
    right = "sse" if mcp_server.transport == "sse" else "streamable_http"
    wrong = "streamable_http" if right == "sse" else "sse"
    await runtime.register_toolgroup(_group(mcp_server.uri, transport=right))
    with pytest.raises(BadRequestError, match="cannot reach MCP server"):
        await runtime.register_toolgroup(_group(mcp_server.uri, transport=wrong))


# --- listing ---------------------------------------------------------------------------------------


async def test_list_tools_shape(runtime: MCPToolRuntime, mcp_server: FixtureServer) -> None:
    tools = {t.name: t for t in await runtime.list_tools(_group(mcp_server.uri))}
    assert {"add", "echo", "fail", "sleep", "request_header", "pixel", "document"} <= set(tools)

    add = tools["add"]
    assert add.description == "Add two integers."
    assert [(p.name, p.parameter_type, p.required, p.default) for p in add.parameters or []] == [
        ("a", "integer", True, None),
        ("b", "integer", True, None),
    ]
    schema = (add.metadata or {})["input_schema"]
    assert schema["type"] == "object"
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["a"]["type"] == "integer"

    echo = {p.name: p for p in tools["echo"].parameters or []}
    assert echo["text"].parameter_type == "string" and echo["text"].required
    assert echo["times"].parameter_type == "integer"
    assert not echo["times"].required and echo["times"].default == 1
    assert tools["fail"].parameters == []


def test_parameter_types_from_json_schema() -> None:
    assert _json_type({"type": "boolean"}) == "boolean"
    assert _json_type({"type": ["null", "number"]}) == "number"
    assert _json_type({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "integer"
    assert (
        _json_type({"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]}) == "array"
    )
    assert _json_type({"$ref": "#/$defs/Point"}) == "object"
    assert _json_type({"items": {}}) == "array"
    assert _json_type({}) == "string"

    from mcp.types import Tool

    tool = Tool(
        name="search",
        description="Search.",
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            },
            "required": ["query"],
        },
    )
    tool_def = _tool_def(tool)
    params = {p.name: p for p in tool_def.parameters or []}
    assert params["query"].description == "What to look for." and params["query"].required
    assert params["limit"].parameter_type == "integer" and not params["limit"].required
    assert (tool_def.metadata or {})["input_schema"] == tool.input_schema


# --- invoking --------------------------------------------------------------------------------------


async def test_invoke_add(runtime: MCPToolRuntime, mcp_server: FixtureServer) -> None:
    result = await runtime.invoke("add", {"a": 2, "b": 3}, _group(mcp_server.uri), None)
    assert result.error_message is None and result.error_code is None
    assert content_to_text(result.content) == "5"
    assert (result.metadata or {})["structured_content"] == {"result": 5}


async def test_invoke_echo(runtime: MCPToolRuntime, mcp_server: FixtureServer) -> None:
    result = await runtime.invoke("echo", {"text": "ab", "times": 3}, _group(mcp_server.uri), None)
    assert content_to_text(result.content) == "ababab"
    result = await runtime.invoke("echo", {"text": "héllo ✓"}, _group(mcp_server.uri), None)
    assert content_to_text(result.content) == "héllo ✓"


async def test_failing_tool_is_a_result_not_an_exception(
    runtime: MCPToolRuntime, mcp_server: FixtureServer
) -> None:
    result = await runtime.invoke("fail", {}, _group(mcp_server.uri), None)
    assert result.error_code == 1
    assert "this tool always fails" in (result.error_message or "")


async def test_bad_arguments_come_back_as_a_tool_error(
    runtime: MCPToolRuntime, mcp_server: FixtureServer
) -> None:
    """The server validates the arguments (the model reads its message and can retry)."""
    result = await runtime.invoke("add", {"a": "two"}, _group(mcp_server.uri), None)
    assert result.error_code == 1
    assert "validation error" in (result.error_message or "").lower()


async def test_unknown_tool_is_not_found(runtime: MCPToolRuntime, mcp_server: FixtureServer) -> None:
    with pytest.raises(NotFoundError, match=r"Tool 'nope' not found .* It offers: add, echo"):
        await runtime.invoke("nope", {}, _group(mcp_server.uri), None)


async def test_images_and_embedded_resources(runtime: MCPToolRuntime, mcp_server: FixtureServer) -> None:
    from mcp_server_fixture import PIXEL_PNG_B64

    image = await runtime.invoke("pixel", {}, _group(mcp_server.uri), None)
    assert isinstance(image.content, list) and len(image.content) == 1
    item = image.content[0]
    assert isinstance(item, ImageContentItem) and item.image.data == PIXEL_PNG_B64
    assert item.model_dump(exclude_none=True) == {"type": "image", "image": {"data": PIXEL_PNG_B64}}

    document = await runtime.invoke("document", {}, _group(mcp_server.uri), None)
    assert document.content == [TextContentItem(text="embedded hello")]


async def test_call_timeout_is_upstream_error(mcp_server: FixtureServer) -> None:
    runtime = MCPToolRuntime(MCPToolRuntimeConfig(call_timeout_s=0.5), LOOPBACK)
    started = time.perf_counter()
    with pytest.raises(UpstreamError, match=r"calling tool 'sleep'.*(in time|within)"):
        await runtime.invoke("sleep", {"seconds": 5}, _group(mcp_server.uri), None)
    assert time.perf_counter() - started < 3
    # The same server still answers the next call.
    assert content_to_text(
        (await runtime.invoke("sleep", {"seconds": 0}, _group(mcp_server.uri), None)).content
    )


async def test_endpoints_go_through_the_outbound_policy(mcp_server: FixtureServer) -> None:
    strict = MCPToolRuntime(MCPToolRuntimeConfig())  # the default policy: public addresses only
    with pytest.raises(OutboundRefusedError, match=r"not a public address \(loopback\)") as refused:
        await strict.register_toolgroup(_group(mcp_server.uri))
    assert refused.value.status_code == 400
    assert f"'127.0.0.1:{mcp_server.port}' to server.outbound.allow_hosts" in refused.value.detail
    with pytest.raises(OutboundRefusedError):
        await strict.invoke("add", {"a": 1, "b": 2}, _group(mcp_server.uri), None)
    # Allowing exactly this address and port lets the same calls through.
    one_port = OutboundPolicy(OutboundConfig(allow_hosts=[f"127.0.0.1:{mcp_server.port}"]))
    allowed = MCPToolRuntime(MCPToolRuntimeConfig(), one_port)
    result = await allowed.invoke("add", {"a": 1, "b": 2}, _group(mcp_server.uri), None)
    assert content_to_text(result.content) == "3"


# --- per-request headers ---------------------------------------------------------------------------


async def test_headers_from_provider_data_reach_the_server(
    runtime: MCPToolRuntime, mcp_server: FixtureServer
) -> None:
    group = _group(mcp_server.uri)
    other = f"http://127.0.0.1:{mcp_server.port}/elsewhere"
    provider_data = {
        "mcp_headers": {
            mcp_server.uri + "/": {"Authorization": "Bearer t0ken"},  # trailing slash: same endpoint
            other: {"X-Other": "not for this server"},
        }
    }
    result = await runtime.invoke("request_header", {"name": "Authorization"}, group, provider_data)
    assert content_to_text(result.content) == "Bearer t0ken"
    result = await runtime.invoke("request_header", {"name": "X-Other"}, group, provider_data)
    assert content_to_text(result.content) == ""
    result = await runtime.invoke("request_header", {"name": "Authorization"}, group, None)
    assert content_to_text(result.content) == ""


async def test_malformed_mcp_headers_are_bad_request(runtime: MCPToolRuntime) -> None:
    uri = "http://127.0.0.1:1/mcp"
    with pytest.raises(BadRequestError, match="mcp_headers"):
        await runtime.invoke("add", {}, _group(uri), {"mcp_headers": ["Authorization"]})
    with pytest.raises(BadRequestError, match="mcp_headers"):
        await runtime.invoke("add", {}, _group(uri), {"mcp_headers": {uri: {"X-Count": 3}}})


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_that_wants_credentials(runtime: MCPToolRuntime, tmp_path: Path, transport: str) -> None:
    server = _serve(tmp_path, transport, require_header="X-Api-Key=s3cret")
    try:
        group = _group(server.uri)
        # Reachable, but credentials only arrive per request: registration accepts the group.
        assert await runtime.register_toolgroup(group) == group
        with pytest.raises(UpstreamError, match="HTTP 401"):
            await runtime.invoke("add", {"a": 1, "b": 1}, group, None)
        with pytest.raises(UpstreamError, match="HTTP 401"):
            await runtime.list_tools(group)
        provider_data = {"mcp_headers": {server.uri: {"X-Api-Key": "s3cret"}}}
        assert any(t.name == "add" for t in await runtime.list_tools(group, provider_data))
        result = await runtime.invoke("add", {"a": 1, "b": 1}, group, provider_data)
        assert content_to_text(result.content) == "2"
    finally:
        server.stop()


# --- the server going away -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_down_then_back(runtime: MCPToolRuntime, tmp_path: Path, transport: str) -> None:
    server = _serve(tmp_path, transport)
    group = _group(server.uri)
    try:
        await runtime.register_toolgroup(group)
        server.stop()

        with pytest.raises(BadRequestError, match=f"^cannot reach MCP server at {server.uri}: "):
            await runtime.register_toolgroup(group)
        with pytest.raises(UpstreamError) as down:
            await runtime.invoke("add", {"a": 1, "b": 2}, group, None)
        assert down.value.status_code == 502
        assert f"MCP server at {server.uri} failed while calling tool 'add'" in down.value.detail
        with pytest.raises(UpstreamError):
            await runtime.list_tools(group)

        server.start()  # same port: nothing was cached, so it just works again
        result = await runtime.invoke("add", {"a": 1, "b": 2}, group, None)
        assert content_to_text(result.content) == "3"
    finally:
        server.stop()


# --- plumbing --------------------------------------------------------------------------------------


async def test_factory_and_config_defaults() -> None:
    config = MCPToolRuntimeConfig.model_validate({})
    assert (config.connect_timeout_s, config.call_timeout_s) == (10.0, 60.0)
    assert isinstance(MCPToolRuntimeConfig.sample_run_config(), dict)
    assert isinstance(await get_provider_impl(config, ProviderDeps()), MCPToolRuntime)


def test_fixture_binds_loopback_only(mcp_server: FixtureServer) -> None:
    with socket.socket() as probe:
        probe.settimeout(1)
        probe.connect(("127.0.0.1", mcp_server.port))
    listening = subprocess.run(["ss", "-Htln", f"sport = :{mcp_server.port}"], capture_output=True, text=True)
    if listening.returncode != 0:
        pytest.skip("ss is not available")
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.stdout.splitlines() if line.strip()}
    assert addresses == {"127.0.0.1"}
