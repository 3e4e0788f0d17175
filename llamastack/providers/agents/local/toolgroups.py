"""Which tools an agent's turn offers the model, and the arguments the agent adds to their calls.

Toolgroup entries are a group id (``builtin::rag``), or ``group/tool`` to offer one tool of a group
(``builtin::rag/knowledge_search``), either as a plain string or as ``{"name": ..., "args": {...}}``;
a group's args are merged into every call of its tools (``vector_db_ids`` for the RAG tool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llamastack.stack.apis import agents as a
from llamastack.stack.apis.inference.core import ToolSpec
from llamastack.stack.apis.tools import Tool, ToolDef, ToolGroups
from llamastack.stack.translate import native as tn

RAG_GROUP = "builtin::rag"
KNOWLEDGE_SEARCH = "knowledge_search"


def entry_name(entry: a.AgentTool | dict[str, Any]) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        return str(entry.get("name", ""))
    return entry.name


def entry_args(entry: a.AgentTool | dict[str, Any]) -> dict[str, Any]:
    if isinstance(entry, str):
        return {}
    if isinstance(entry, dict):
        return dict(entry.get("args") or {})
    return dict(entry.args)


@dataclass
class TurnTools:
    specs: dict[str, ToolSpec] = field(default_factory=dict)  # tool name -> what the model is offered
    args: dict[str, dict[str, Any]] = field(default_factory=dict)  # tool name -> args added to its calls
    client: set[str] = field(default_factory=set)  # tools the client runs (the turn waits for them)
    groups: dict[str, str] = field(default_factory=dict)  # server tool name -> its tool group


class ToolResolver:
    """Resolves toolgroup entries against the tool runtime's registered groups."""

    def __init__(self, groups: ToolGroups) -> None:
        self.groups = groups

    def split(self, name: str) -> tuple[str, str | None]:
        """(group id, tool name or None)."""
        return self.groups.split_toolgroup_name(name)

    async def _group_tools(self, group_id: str) -> list[Tool]:
        return (await self.groups.list_tools(group_id)).data  # 404 naming the group

    async def check(self, entries: list[a.AgentTool]) -> None:
        """404 for an unknown group, or a ``group/tool`` whose group has no such tool."""
        for entry in entries:
            name = entry_name(entry)
            group_id, tool_name = self.split(name)
            if tool_name is None:
                await self.groups.get_tool_group(group_id)  # no need to reach a remote group's server
            else:
                await self.groups.list_tools(name)

    async def resolve(
        self,
        agent_entries: list[a.AgentTool],
        turn_entries: list[a.AgentTool],
        client_tools: list[ToolDef],
        *,
        skip_groups: frozenset[str] = frozenset(),
    ) -> TurnTools:
        """A turn that names toolgroups uses those instead of the agent's; args given for a group by
        the agent still apply to it unless the turn gives its own."""
        group_args: dict[str, dict[str, Any]] = {}
        for entry in [*agent_entries, *turn_entries]:
            if not isinstance(entry, str):
                group_args[self.split(entry_name(entry))[0]] = entry_args(entry)
        result = TurnTools()
        for entry in turn_entries or agent_entries:
            group_id, only = self.split(entry_name(entry))
            if group_id in skip_groups:
                continue
            registered = await self.groups.get_tool_group(group_id)
            for tool in await self._group_tools(group_id):
                if (only is not None and tool.identifier != only) or tool.identifier in result.specs:
                    continue
                result.specs[tool.identifier] = tn.tool_spec_from_def(
                    ToolDef(
                        name=tool.identifier,
                        description=tool.description,
                        parameters=tool.parameters,
                        metadata=tool.metadata,
                    )
                )
                # The group's own registered args first: the runtime finds a tool by name, possibly in
                # another group offering a tool of the same name.
                result.args[tool.identifier] = {**(registered.args or {}), **group_args.get(group_id, {})}
                result.groups[tool.identifier] = group_id
        for tool_def in client_tools:
            result.specs[tool_def.name] = tn.tool_spec_from_def(tool_def)
            result.client.add(tool_def.name)
            result.args.pop(tool_def.name, None)
            result.groups.pop(tool_def.name, None)
        return result

    async def add_knowledge_search(self, tools: TurnTools, vector_db_id: str) -> bool:
        """Lets knowledge_search also search the session's vector db (where turn documents go); offers
        the tool from the RAG group when the agent's toolgroups do not. False if no group serves it."""
        if KNOWLEDGE_SEARCH in tools.client:
            return False
        if KNOWLEDGE_SEARCH not in tools.specs:
            rag_group = await self.groups.find_tool_group(RAG_GROUP)
            if rag_group is None:
                return False
            found = [t for t in await self._group_tools(RAG_GROUP) if t.identifier == KNOWLEDGE_SEARCH]
            if not found:
                return False
            tool = found[0]
            tools.specs[KNOWLEDGE_SEARCH] = tn.tool_spec_from_def(
                ToolDef(name=tool.identifier, description=tool.description, parameters=tool.parameters)
            )
            tools.args[KNOWLEDGE_SEARCH] = dict(rag_group.args or {})
            tools.groups[KNOWLEDGE_SEARCH] = RAG_GROUP
        args = tools.args.setdefault(KNOWLEDGE_SEARCH, {})
        db_ids = args.get("vector_db_ids") or []
        db_ids = [db_ids] if isinstance(db_ids, str) else list(db_ids)
        if vector_db_id not in db_ids:
            db_ids.append(vector_db_id)
        args["vector_db_ids"] = db_ids
        return True
