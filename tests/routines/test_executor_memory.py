"""Variable memory in the executor loop: long results behind keys, keys resolved in arguments, refused when
unknown, never shared between runs."""

from __future__ import annotations

import json

import pytest

from memory.runlog import RunLog
from routines.hub import ToolHub
from routines.model import Routine
from routines.prompt import build_system_prompt
from tests.fixtures.executing import TEAM, Calls, executor_for, names_called
from tests.fixtures.toy_server import (
    SALARY_ROUTINE,
    team_members,
    team_routine,
    unbound,
)

pytestmark = pytest.mark.anyio



async def test_a_long_member_list_becomes_a_key_and_the_next_tool_receives_the_real_list(
    hub: ToolHub, calls: Calls, runlog: RunLog
) -> None:
    replies = [
        {"name": "list_team", "arguments": {"team": "red"}},
        {"name": "count_members", "arguments": {"members": "memory_members"}},
        {"name": "summarize", "arguments": {"topic": "team size", "data": {"count": 40}}},
    ]
    executor = executor_for(hub, replies, runlog, memory_threshold=100)
    result = await executor.run(TEAM, "How big is the red team?")
    assert result.ok, result.error
    assert result.calls[0].observation == (
        'memory_list_team = {"team": "red", "members": "memory_members"}\n'
        'memory_members = ["Red Member 01", "Red Member 02", "Red Member 03", "Red Member 04", "Red Member... (680 characters)')
    assert ("count_members", {"members": team_members("red")}) in calls
    assert result.calls[1].arguments == {"members": "memory_members"}
    assert result.calls[1].resolved_arguments == {"members": team_members("red")}
    assert result.calls[1].result == {"count": 40, "received": "list", "first": "Red Member 01"}
    second = executor.backend.requests[1]  # type: ignore[union-attr]
    assert "Red Member 40" not in "".join(m.content for m in second)  # only the preview, never the whole list
    assert runlog.get_run(result.run_id or "")["steps"][1]["resolved_arguments"] == {"members": team_members("red")}
    # The system prompt is the shared builder's (distillation and evaluation use it too), the same at every step.
    tools = [t for t in await hub.list_tools() if t.name in TEAM.tools()]
    assert second[0].content == build_system_prompt(routines=[TEAM], tools=tools)
    assert executor.backend.requests[0][0] == second[0]  # type: ignore[union-attr]


async def test_a_key_inside_a_string_argument_is_replaced_by_the_value_text(hub: ToolHub, calls: Calls) -> None:
    routine = Routine.from_data({"id": "note", "steps": [
        {"step": "1", "tool": "list_team"}, {"step": "2", "tool": "send_note", "type": "finish"}]})
    replies = [{"name": "list_team", "arguments": {"team": "blue"}},
               {"name": "send_note", "arguments": {"text": "Invite memory_members today"}}]
    result = await executor_for(hub, replies).run(routine, "Invite the blue team")
    assert result.ok
    assert calls[-1] == ("send_note", {"text": f"Invite {json.dumps(team_members('blue'))} today"})


async def test_an_unknown_memory_key_is_refused(hub: ToolHub, calls: Calls) -> None:
    replies = [{"name": "list_team", "arguments": {"team": "red"}},
               {"name": "count_members", "arguments": {"members": "memory_team"}},
               {"name": "count_members", "arguments": {"members": "memory_members"}},
               {"name": "summarize", "arguments": {"topic": "t", "data": {}}}]
    result = await executor_for(hub, replies).run(Routine.from_data(unbound(team_routine(), "2")), "How big is the red team?")
    assert result.ok
    (refused,) = [a for a in result.attempts if a.error]
    assert refused.extra["kind"] == "unknown_key"
    assert refused.error == "unknown memory key(s) memory_team (stored keys: memory_list_team, memory_members)"
    assert names_called(calls).count("count_members") == 1


async def test_memory_keys_never_cross_runs(hub: ToolHub, calls: Calls) -> None:
    executor = executor_for(hub, [{"name": "list_team", "arguments": {"team": "red"}},
                               {"name": "count_members", "arguments": {"members": "memory_members"}},
                               {"name": "summarize", "arguments": {"topic": "t", "data": {}}}])
    assert (await executor.run(TEAM, "red team size")).ok
    executor.backend.add(*[{"name": "count_members", "arguments": {"members": "memory_members"}}] * 3)  # type: ignore[union-attr]
    later = await executor.run(Routine.from_data({"steps": [{"step": "1", "tool": "count_members"}]}), "count them")
    assert not later.ok and "unknown memory key(s) memory_members (stored keys: none yet)" in (later.error or "")


async def test_a_binding_that_fails_at_run_time_is_left_to_the_model_in_hybrid_mode(hub: ToolHub, calls: Calls) -> None:
    data = json.loads(SALARY_ROUTINE.read_text())
    data["steps"][3]["args"] = {"employee_id": "{{steps.2.id}}"}  # search_employee answers employee_id, not id
    routine = Routine.from_data(data)
    executor = executor_for(hub, [{"name": "get_salary", "arguments": {"employee_id": "E-001"}}])
    hybrid = await executor.run(routine, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr", mode="hybrid")
    assert hybrid.ok and [c.source for c in hybrid.calls] == ["bound", "bound", "model", "bound"]
    bound = await executor.run(routine, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr", mode="bound")
    assert not bound.ok and bound.error_kind == "binding"
    assert bound.error == "step 3-1_1: {{steps.2.id}}: steps.2 has no 'id' (it has: employee_id, name)"
