"""Branch choices found in records: walked through the Routine read back from the record's own prompt."""

from __future__ import annotations

from routines.backends.base import ToolSpec
from routines.calls import ToolCall
from routines.prompt import build_system_prompt
from routines.scenario import Scenario
from trainer.decisions import decision_points
from trainer.sharegpt import Conversation


def conversation(routines: list, calls: list[str]) -> Conversation:
    tools = [ToolSpec(name, "", {"type": "object", "properties": {}}) for name in dict.fromkeys(calls)]
    return Conversation(
        id="q", system=build_system_prompt(routines=routines, tools=tools), tools=tools, query="Can I take leave?",
        calls=[ToolCall(name, {}) for name in calls], observations=["{}"] * (len(calls) - 1),
    )


LEAVE = Scenario.load("hr").routine_map()["hr.leave"]
ALLOWED = ["search_employee", "check_permission", "get_leave_balance", "get_leave_requests", "count_working_days",
           "summarize"]
DENIED = ["search_employee", "check_permission", "search_policy", "get_policy", "summarize"]


def test_the_first_call_of_each_branch_is_the_choice() -> None:
    (allowed,) = decision_points(conversation([LEAVE], ALLOWED))
    assert (allowed.call, allowed.step, allowed.tool, allowed.alternatives) == (2, "3-1_1", "get_leave_balance", ("search_policy",))
    (denied,) = decision_points(conversation([LEAVE], DENIED))
    assert (denied.call, denied.step, denied.tool, denied.alternatives) == (2, "3-2_1", "search_policy", ("get_leave_balance",))


def test_no_choice_without_one_routine_or_after_leaving_it() -> None:
    assert decision_points(conversation([], ALLOWED)) == []
    assert decision_points(conversation([LEAVE, LEAVE], ALLOWED)) == []
    assert decision_points(conversation([LEAVE], ["search_employee", "get_salary", "get_leave_balance"])) == []
