"""The Responses API's tools: ``function`` tools the client runs, and ``file_search``, ``web_search``
and ``mcp`` tools the server runs inside the response, feeding each result back to the model.

Everything a request's tools need is checked before the model runs (vector stores exist, filters
are well formed, a web search tool group is there, MCP servers answer and list their tools), so a
client mistake is a 4xx rather than a failed response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from ..apis import responses as r
from ..apis.common import content_to_text
from ..apis.inference.core import ToolCallOut, ToolOptions, ToolSpec
from ..apis.tools import MCPEndpoints, ToolGroups, ToolRuntime
from ..apis.vector_stores import OpenaiSearchVectorStoreRequest, RankingOptions, VectorStores
from ..errors import BadRequestError, MissingCredentialsError, NotFoundError, StackError
from ..ranking import RANKERS
from ..translate import native as tn
from ..translate import responses as tr
from .vector_stores import OPENAI_RANKERS, matches

log = logging.getLogger(__name__)

Kind = Literal["file_search", "web_search", "mcp"]
WEB_SEARCH_TYPES = ("web_search", "web_search_preview", "web_search_preview_2025_03_11")
WEB_SEARCH_TOOL = "web_search"  # the tool name the web-search tool groups serve
_QUERY = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to search for."}},
    "required": ["query"],
}
MAX_FILE_SEARCH_RESULTS = 50


@dataclass
class ServerTool:
    """A tool the server runs: what the model is offered, and how to run it."""

    kind: Kind
    spec: ToolSpec
    vector_store_ids: list[str] = field(default_factory=list)
    filters: dict[str, Any] | None = None
    max_num_results: int = 10
    ranking_options: RankingOptions | None = None
    server_label: str = ""
    server_url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    needs_approval: bool = False  # an mcp tool whose calls wait for the client's approval


@dataclass
class RequestTools:
    """A request's tools, prepared: the specs offered, which run where, and the forced choice."""

    specs: list[ToolSpec]
    client: set[str]
    server: dict[str, ServerTool]
    listings: list[r.ResponseMCPListTools]
    choice: str = "auto"
    first_only: set[str] | None = None  # tools the first inference may call (tool_choice mcp by label)
    parallel: bool = True

    def options(self, iteration: int, *, last: bool) -> ToolOptions | None:
        """The first inference follows tool_choice; later ones (after server tools ran) choose freely,
        and the last one allowed answers in words."""
        if not self.specs:
            return None
        if iteration == 0:
            specs = [s for s in self.specs if self.first_only is None or s.name in self.first_only]
            return ToolOptions(tools=specs, choice=self.choice, parallel=self.parallel)
        choice = "none" if last or self.choice == "none" else "auto"
        return ToolOptions(tools=self.specs, choice=choice, parallel=self.parallel)


@dataclass
class ToolResult:
    item: r.ResponseOutputItem
    text: str  # what the model reads
    failed: bool = False


class ResponseTools:
    """Prepares a request's tools and runs the server-side ones, over the stack's APIs (any may be
    None when the run config lacks it; a tool needing it is then a 400 naming what to add)."""

    def __init__(
        self,
        *,
        vector_stores: VectorStores | None = None,
        tool_groups: ToolGroups | None = None,
        tool_runtime: ToolRuntime | None = None,
        mcp: MCPEndpoints | None = None,
    ) -> None:
        self.vector_stores = vector_stores
        self.tool_groups = tool_groups
        self.tool_runtime = tool_runtime
        self.mcp = mcp

    # --- preparing -----------------------------------------------------------------------------

    async def prepare(
        self,
        tools: list[dict[str, Any]] | None,
        choice: str | dict[str, Any] | None,
        *,
        parallel: bool | None = None,
    ) -> RequestTools | None:
        if not tools:
            if choice not in (None, "auto", "none"):
                raise BadRequestError("tool_choice needs tools; send tools or omit tool_choice.")
            return None
        prepared = RequestTools(specs=[], client=set(), server={}, listings=[])
        by_label: dict[str, set[str]] = {}
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            kind = tool.get("type")
            if kind == "function":
                found = [tr.tool_spec(tool, where)]
                prepared.client.add(found[0].name)
            elif kind == "file_search":
                found = [await self._file_search(tool, where, prepared)]
            elif kind in WEB_SEARCH_TYPES:
                found = [await self._web_search(where, prepared)]
            elif kind == "mcp":
                found = await self._mcp(tool, where, prepared)
                by_label[prepared.listings[-1].server_label] = {s.name for s in found}
            else:
                raise BadRequestError(
                    f"{where}: tool type '{kind}' is not supported; use function, file_search, "
                    "web_search or mcp."
                )
            for spec in found:
                if any(s.name == spec.name for s in prepared.specs):
                    raise BadRequestError(
                        f"{where}: a tool named '{spec.name}' is offered twice; every tool the model "
                        "sees needs its own name (limit an mcp server's tools with allowed_tools)."
                    )
                prepared.specs.append(spec)
        prepared.choice, prepared.first_only = _choice(choice, prepared, by_label)
        if parallel is not None:
            prepared.parallel = bool(parallel)
        return prepared

    async def _file_search(self, tool: dict[str, Any], where: str, prepared: RequestTools) -> ToolSpec:
        if self.vector_stores is None:
            raise BadRequestError(
                f"{where}: this server has no vector_io provider, so file_search cannot run; add one to "
                "the run config."
            )
        _only(tool, {"type", "vector_store_ids", "filters", "max_num_results", "ranking_options"}, where)
        ids = tool.get("vector_store_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(x, str) and x for x in ids):
            raise BadRequestError(f"{where}.vector_store_ids must be a non-empty list of vector store ids.")
        for vector_store_id in ids:
            await self.vector_stores.get(vector_store_id)  # 404 naming it (another key's too)
        filters = tool.get("filters")
        if filters is not None:
            if not isinstance(filters, dict):
                raise BadRequestError(f"{where}.filters must be a comparison or compound filter object.")
            matches({}, filters, f"{where}.filters")  # checks the shape up front
        limit = tool.get("max_num_results", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_FILE_SEARCH_RESULTS:
            raise BadRequestError(
                f"{where}.max_num_results must be an integer from 1 to {MAX_FILE_SEARCH_RESULTS}."
            )
        ranking = None
        if tool.get("ranking_options") is not None:
            try:
                ranking = RankingOptions.model_validate(tool["ranking_options"])
            except ValidationError as exc:
                raise BadRequestError(f"{where}.ranking_options: {exc.errors()[0]['msg']}") from None
            if ranking.ranker not in (*OPENAI_RANKERS, *RANKERS):
                names = ", ".join(f"'{n}'" for n in (*RANKERS, *OPENAI_RANKERS) if n)
                raise BadRequestError(
                    f"{where}.ranking_options.ranker {ranking.ranker!r} is not known; use one of {names}."
                )
        spec = ToolSpec(
            name="file_search",
            description="Search the user's uploaded files for passages relevant to a query.",
            parameters=_QUERY,
        )
        prepared.server[spec.name] = ServerTool(
            kind="file_search",
            spec=spec,
            vector_store_ids=list(ids),
            filters=filters,
            max_num_results=limit,
            ranking_options=ranking,
        )
        return spec

    async def _web_search(self, where: str, prepared: RequestTools) -> ToolSpec:
        missing = BadRequestError(
            f"{where}: this server has no web search tool; register a tool group served by a web search "
            "provider (remote::brave-search or remote::tavily-search), e.g. builtin::websearch."
        )
        if self.tool_groups is None or self.tool_runtime is None:
            raise missing
        try:
            found = await self.tool_groups.get_tool(WEB_SEARCH_TOOL)
        except NotFoundError:
            raise missing from None
        # A key-less request is refused before the model runs, whether or not it would call the tool:
        # providers check credentials before arguments, so an empty query learns only that.
        try:
            await self.tool_runtime.invoke_tool(WEB_SEARCH_TOOL, {"query": ""})
        except MissingCredentialsError as exc:
            raise BadRequestError(f"{where}: {exc.detail}") from None
        except BadRequestError:
            pass
        spec = ToolSpec(
            name=WEB_SEARCH_TOOL,
            description=found.description or "Search the web for up-to-date information.",
            parameters=_QUERY,
        )
        prepared.server[spec.name] = ServerTool(kind="web_search", spec=spec)
        return spec

    async def _mcp(self, tool: dict[str, Any], where: str, prepared: RequestTools) -> list[ToolSpec]:
        _only(
            tool,
            {
                "type",
                "server_label",
                "server_url",
                "headers",
                "require_approval",
                "allowed_tools",
                "server_description",
            },
            where,
        )
        label, url = tool.get("server_label"), tool.get("server_url")
        if not isinstance(label, str) or not label:
            raise BadRequestError(f"{where}.server_label is required: a short name for the MCP server.")
        if any(x.server_label == label for x in prepared.listings):
            raise BadRequestError(f"{where}.server_label '{label}' is used by two mcp tools.")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadRequestError(f"{where}.server_url must be the MCP server's http(s) URL.")
        headers = tool.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise BadRequestError(f"{where}.headers must map header names to string values.")
        needs_approval = _approval(tool.get("require_approval", "never"), where)
        allowed = _allowed_tools(tool.get("allowed_tools"), f"{where}.allowed_tools")
        if self.mcp is None:
            raise BadRequestError(
                f"{where}: this server has no MCP tool runtime, so mcp tools cannot run; add "
                "remote::model-context-protocol to the run config's tool_runtime providers."
            )
        defs = await self.mcp.list_endpoint_tools(url, headers)
        if allowed is not None:
            defs = [d for d in defs if d.name in allowed]
        listing = r.ResponseMCPListTools(
            id=tr.new_id("mcpl"),
            server_label=label,
            tools=[
                r.MCPListToolsTool(
                    name=d.name,
                    description=d.description,
                    input_schema=tn.tool_spec_from_def(d).parameters,
                )
                for d in defs
            ],
        )
        prepared.listings.append(listing)
        specs = [tn.tool_spec_from_def(d) for d in defs]
        for spec in specs:
            prepared.server[spec.name] = ServerTool(
                kind="mcp",
                spec=spec,
                server_label=label,
                server_url=url,
                headers=dict(headers),
                needs_approval=needs_approval(spec.name),
            )
        return specs

    # --- running -------------------------------------------------------------------------------

    def started(self, call: ToolCallOut, tool: ServerTool, item_id: str) -> r.ResponseOutputItem:
        """The item as it is before the tool ran (for output_item.added)."""
        if tool.kind == "file_search":
            return r.ResponseFileSearchCall(id=item_id, queries=[_query(call)], status="in_progress")
        if tool.kind == "web_search":
            return r.ResponseWebSearchCall(id=item_id, status="in_progress")
        return r.ResponseMCPCall(
            id=item_id, server_label=tool.server_label, name=call.name, arguments=call.arguments
        )

    async def run(
        self, call: ToolCallOut, tool: ServerTool, item_id: str, *, include_results: bool
    ) -> ToolResult:
        if tool.kind == "file_search":
            return await self._run_file_search(call, tool, item_id, include_results)
        if tool.kind == "web_search":
            return await self._run_web_search(call, item_id)
        return await self._run_mcp(call, tool, item_id)

    async def _run_file_search(
        self, call: ToolCallOut, tool: ServerTool, item_id: str, include_results: bool
    ) -> ToolResult:
        assert self.vector_stores is not None
        query = _query(call)
        if not query.strip():
            item = r.ResponseFileSearchCall(id=item_id, queries=[query], status="failed")
            return ToolResult(item, "file_search needs a non-empty query.", failed=True)
        found: list[r.FileSearchResult] = []
        for vector_store_id in tool.vector_store_ids:
            page = await self.vector_stores.search(
                vector_store_id,
                OpenaiSearchVectorStoreRequest(
                    query=query,
                    filters=tool.filters,
                    max_num_results=tool.max_num_results,
                    ranking_options=tool.ranking_options,
                ),
            )
            found.extend(
                r.FileSearchResult(
                    file_id=hit.file_id,
                    filename=hit.filename,
                    score=hit.score,
                    text="\n".join(c.text for c in hit.content),
                    attributes=hit.attributes,
                )
                for hit in page.data
            )
        found.sort(key=lambda hit: hit.score, reverse=True)
        found = found[: tool.max_num_results]
        item = r.ResponseFileSearchCall(
            id=item_id, queries=[query], status="completed", results=found if include_results else None
        )
        return ToolResult(item, _file_search_text(query, found))

    async def _run_web_search(self, call: ToolCallOut, item_id: str) -> ToolResult:
        assert self.tool_runtime is not None
        query = _query(call)
        if not query.strip():
            item = r.ResponseWebSearchCall(id=item_id, status="failed")
            return ToolResult(item, "web_search needs a non-empty query.", failed=True)
        # A missing API key is the caller's to fix: its 400 ends the response.
        result = await self.tool_runtime.invoke_tool(WEB_SEARCH_TOOL, {"query": query})
        if result.error_message:
            item = r.ResponseWebSearchCall(id=item_id, status="failed")
            return ToolResult(item, f"web_search failed: {result.error_message}", failed=True)
        item = r.ResponseWebSearchCall(id=item_id, status="completed")
        return ToolResult(item, content_to_text(result.content))

    async def _run_mcp(self, call: ToolCallOut, tool: ServerTool, item_id: str) -> ToolResult:
        assert self.mcp is not None

        def failed(message: str) -> ToolResult:
            item = r.ResponseMCPCall(
                id=item_id,
                server_label=tool.server_label,
                name=call.name,
                arguments=call.arguments,
                error=message,
            )
            return ToolResult(item, f"Error: {message}", failed=True)

        try:
            kwargs = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            return failed("the arguments are not valid JSON")
        if not isinstance(kwargs, dict):
            return failed("the arguments must be a JSON object")
        try:
            result = await self.mcp.invoke_endpoint_tool(tool.server_url, tool.headers, call.name, kwargs)
        except StackError as exc:
            # The model sees what went wrong and may answer anyway (as OpenAI does with mcp_call errors).
            return failed(exc.detail)
        text = content_to_text(result.content)
        if result.error_message:
            return failed(result.error_message)
        item = r.ResponseMCPCall(
            id=item_id, server_label=tool.server_label, name=call.name, arguments=call.arguments, output=text
        )
        return ToolResult(item, text)


# --- helpers -------------------------------------------------------------------------------------


def _only(tool: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(tool) - known)
    if unknown:
        raise BadRequestError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )


def _approval(value: Any, where: str) -> Callable[[str], bool]:
    """Which of a server's tools wait for approval: 'never', 'always', or a filter of tool names
    ({always: [...], never: [...]}, each a list or {tool_names: [...]}); a tool a filter does not
    name needs approval, as at OpenAI."""
    if value == "never":
        return lambda name: False
    if value == "always":
        return lambda name: True
    if isinstance(value, dict) and set(value) <= {"always", "never"}:
        always = _allowed_tools(value.get("always"), f"{where}.require_approval.always") or set()
        never = _allowed_tools(value.get("never"), f"{where}.require_approval.never") or set()
        return lambda name: name in always or name not in never
    raise BadRequestError(
        f"{where}.require_approval must be 'never', 'always' or "
        "{'always': {'tool_names': [...]}, 'never': {'tool_names': [...]}}."
    )


def _allowed_tools(value: Any, where: str) -> set[str] | None:
    if value is None:
        return None
    names = value.get("tool_names") if isinstance(value, dict) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequestError(f"{where} must be a list of tool names or {{'tool_names': [...]}}.")
    return set(names)


def _choice(
    choice: str | dict[str, Any] | None, prepared: RequestTools, by_label: dict[str, set[str]]
) -> tuple[str, set[str] | None]:
    names = [s.name for s in prepared.specs]
    picked = choice or "auto"
    if isinstance(picked, str):
        if picked not in ("auto", "none", "required"):
            raise BadRequestError(
                f"tool_choice must be auto, none, required or a tool object, not '{picked[:80]}'."
            )
        return picked, None
    kind = picked.get("type")
    if kind == "function":
        name = str(picked.get("name") or "")
        if name not in prepared.client:
            raise BadRequestError(
                f"tool_choice names the function '{name[:80]}', which is not one of the tools: {names}."
            )
        return name, None
    if kind in ("file_search", *WEB_SEARCH_TYPES):
        name = "file_search" if kind == "file_search" else WEB_SEARCH_TOOL
        if name not in prepared.server:
            raise BadRequestError(f"tool_choice is {kind}, but tools has no {kind} tool.")
        return name, None
    if kind == "mcp":
        label = picked.get("server_label")
        if label not in by_label:
            raise BadRequestError(
                f"tool_choice names the MCP server '{str(label)[:80]}', which no mcp tool has as "
                f"server_label: {sorted(by_label)}."
            )
        tool_name = picked.get("name")
        if tool_name is None:
            if not by_label[label]:
                raise BadRequestError(f"tool_choice: the MCP server '{label}' offers no tools.")
            return "required", by_label[label]
        if tool_name not in by_label[label]:
            raise BadRequestError(
                f"tool_choice names '{str(tool_name)[:80]}', which the MCP server '{label}' does not "
                f"offer: {sorted(by_label[label])}."
            )
        return str(tool_name), None
    raise BadRequestError(
        "tool_choice: a tool object is {'type': 'function', 'name': ...}, {'type': 'file_search'}, "
        "{'type': 'web_search'} or {'type': 'mcp', 'server_label': ..., 'name': ...}."
    )


def _query(call: ToolCallOut) -> str:
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return ""
    query = args.get("query") if isinstance(args, dict) else None
    return query if isinstance(query, str) else ""


def _file_search_text(query: str, found: list[r.FileSearchResult]) -> str:
    if not found:
        return f"No passages found for '{query}'."
    lines = [f"Passages found for '{query}':"]
    for i, hit in enumerate(found, 1):
        lines.append(f"[{i}] {hit.filename or hit.file_id}: {hit.text}")
    return "\n".join(lines)
