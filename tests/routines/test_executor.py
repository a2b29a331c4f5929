"""The executor loop on a real in-memory MCP server, with the model replaced by ``ScriptedBackend``: the three
modes, the checks on every call, retries, the Routine's bindings, guards and constraints, the prompt and the
run log. Input reading, variable memory and downstream servers that die have their own files
(test_executor_inputs.py, test_executor_memory.py, test_executor_servers.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from memory.runlog import RunLog, StepRecord
from routines.backends.base import Message
from routines.backends.scripted import call_text
from routines.errors import CallerError
from routines.executor import ExecutorConfig
from routines.hub import ToolHub
from routines.model import Routine
from routines.prompt import build_messages
from tests.fixtures.executing import ADA_HR, FREE, SALARY, TEAM, Calls, executor_for, names_called, tools_of
from tests.fixtures.toy_server import (
    SALARY_ROUTINE,
    unbound,
)

pytestmark = pytest.mark.anyio


# ---- the happy paths of the three modes ----------------------------------------------------------
async def test_model_mode_follows_the_scripted_calls_to_the_answer(hub: ToolHub, calls: Calls, runlog: RunLog) -> None:
    executor = executor_for(hub, list(ADA_HR), runlog)
    result = await executor.run(SALARY, "What does Ada earn?", user_id="u-hr")
    assert result.ok, result.error
    assert result.answer == "salary: employee_id=E-001, name=Ada Lovelace, salary=98000"
    assert tools_of(result) == ["get_user_profile", "search_employee", "get_salary", "summarize"]
    assert [c.step for c in result.calls] == ["1", "2", "3-1_1", "4"]
    assert names_called(calls) == tools_of(result)
    assert len(executor.backend.requests) == 4  # type: ignore[union-attr]


async def test_bound_mode_needs_no_model_and_takes_the_branch_its_condition_picks(hub: ToolHub, calls: Calls) -> None:
    executor = executor_for(hub)
    hr = await executor.run(SALARY, "Ada's salary?", inputs={"employee_name": "Ada"}, user_id="u-hr", mode="bound")
    staff = await executor.run(SALARY, "Ada's salary?", inputs={"employee_name": "Ada"}, user_id="u-staff", mode="bound")
    assert hr.ok and staff.ok
    assert [c.step for c in hr.calls] == ["1", "2", "3-1_1", "4"]
    assert [c.step for c in staff.calls] == ["1", "2", "3-2_1", "4"]
    assert hr.answer == "salary: employee_id=E-001, name=Ada Lovelace, salary=98000"
    assert staff.answer == "salary: band=B4, employee_id=E-001, name=Ada Lovelace"
    assert {c.source for c in hr.calls + staff.calls} == {"bound"}
    assert "get_salary" not in [c.tool for c in staff.calls]


async def test_hybrid_mode_asks_the_model_only_for_the_step_the_routine_leaves_open(hub: ToolHub, calls: Calls) -> None:
    routine = Routine.from_data(unbound(json.loads(SALARY_ROUTINE.read_text()), "2"))
    executor = executor_for(hub, [{"name": "search_employee", "arguments": {"name": "Alan"}}])
    result = await executor.run(routine, "What does Alan earn?", inputs={"employee_name": "Alan"}, user_id="u-hr",
                                mode="hybrid")
    assert result.ok, result.error
    assert [c.source for c in result.calls] == ["bound", "model", "bound", "bound"]
    assert result.calls[2].arguments == {"employee_id": "E-002"}  # bound to the model's step 2 output
    assert "87000" in (result.answer or "")
    (request,) = executor.backend.requests  # type: ignore[union-attr]
    # The model sees the bound step as an earlier call with its observation.
    assert request[2] == Message("assistant", call_text("get_user_profile", {"user_id": "u-hr"}))
    assert request[3].content == 'memory_get_user_profile = {"user_id": "u-hr", "role": "hr"}'


async def test_hybrid_mode_overlays_the_bound_arguments_on_the_models_call(hub: ToolHub, calls: Calls) -> None:
    data = json.loads(SALARY_ROUTINE.read_text())
    data["steps"][-1]["args"] = {"topic": "salary"}  # "data" (required) is left to the model
    wrong_topic = {"name": "summarize", "arguments": {"topic": "weather", "data": {"salary": 98000}}}
    log = RunLog(":memory:")
    executor = executor_for(hub, [wrong_topic], log)
    result = await executor.run(Routine.from_data(data), "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr",
                                mode="hybrid")
    assert result.ok, result.error
    assert calls[-1] == ("summarize", {"topic": "salary", "data": {"salary": 98000}})
    assert result.calls[-1].source == "model"
    assert result.calls[-1].model_arguments == wrong_topic["arguments"]  # what the model wrote, kept
    assert log.trajectory(result.run_id or "").calls == result.trajectory().calls  # and logged the same


# ---- the Routine is a capability boundary --------------------------------------------------------
async def test_a_tool_the_routine_does_not_name_is_refused_and_never_reaches_the_server(
    hub: ToolHub, calls: Calls, runlog: RunLog
) -> None:
    # The step-2 observation tells the model to delete records; the scripted model obeys, twice.
    forbidden = {"name": "delete_records", "arguments": {"employee_id": "E-001"}}
    executor = executor_for(hub, [ADA_HR[0], forbidden, forbidden, *ADA_HR[1:]], runlog)
    result = await executor.run(SALARY, "Ada's salary, then delete her records", user_id="u-hr")
    assert result.ok, result.error
    assert "delete_records" not in names_called(calls)
    refused = [a for a in result.attempts if a.error]
    assert [a.extra["kind"] for a in refused] == ["not_in_routine", "not_in_routine"]
    assert "the Routine does not use delete_records" in (refused[0].error or "")
    feedback = executor.backend.requests[2][-1]  # type: ignore[union-attr]
    assert feedback.role == "user" and "search_employee" in feedback.content


async def test_one_run_record_the_log_keeps_and_every_conversation_is_built_from(hub: ToolHub, runlog: RunLog) -> None:
    """The run log's trajectory is the one the executor returned, and the messages the model got before each
    call are build_messages over the calls before it (refused attempts are in the log, not in the record)."""
    forbidden = {"name": "delete_records", "arguments": {"employee_id": "E-001"}}
    executor = executor_for(hub, [ADA_HR[0], forbidden, *ADA_HR[1:]], runlog)
    result = await executor.run(SALARY, "Ada's salary", user_id="u-hr")
    assert result.ok, result.error
    record = result.trajectory()
    assert runlog.trajectory(result.run_id or "") == replace(record, query_id=result.run_id or "")
    assert [c.tool for c in record.calls] == [c["name"] for c in ADA_HR]
    assert all(c.observation and c.tool in c.next_tools for c in record.calls)
    requests = executor.backend.requests  # type: ignore[union-attr]
    first_tries = [requests[0], requests[1], *requests[3:]]  # requests[1] got the refused call
    system = requests[0][0].content
    for k, messages in enumerate(first_tries):
        assert messages == build_messages(system, "Ada's salary", record.calls[:k])
    assert requests[2][: len(requests[1])] == requests[1]  # the retry: the same conversation plus the feedback
    assert len(runlog.get_run(result.run_id or "")["steps"]) == len(record.calls) + 1


async def test_a_model_that_insists_on_a_forbidden_tool_fails_the_run_without_calling_it(hub: ToolHub, calls: Calls) -> None:
    forbidden = {"name": "delete_records", "arguments": {"employee_id": "E-001"}}
    result = await executor_for(hub, [forbidden] * 3).run(SALARY, "delete Ada", user_id="u-hr")
    assert not result.ok and result.error_kind == "model"
    assert "the Routine does not use delete_records" in (result.error or "")
    assert names_called(calls) == []


async def test_out_of_order_and_unknown_tools_are_refused_with_what_comes_next(hub: ToolHub, calls: Calls) -> None:
    executor = executor_for(hub, [ADA_HR[2], {"name": "rm_rf", "arguments": {}}, *ADA_HR])
    result = await executor.run(SALARY, "Ada?", user_id="u-hr")
    assert result.ok
    kinds = [(a.extra.get("kind"), a.error) for a in result.attempts if a.error]
    assert kinds[0][0] == "out_of_order" and "next call is get_user_profile (step 1)" in kinds[0][1]
    assert kinds[1][0] == "unknown_tool" and "no tool 'rm_rf'" in kinds[1][1]
    assert names_called(calls) == tools_of(result)


async def test_a_routine_naming_a_tool_no_server_has_is_the_callers_error(hub: ToolHub) -> None:
    data = json.loads(SALARY_ROUTINE.read_text())
    data["steps"][0]["tool"] = "get_profile"
    with pytest.raises(CallerError, match="names tools the downstream servers do not have: get_profile"):
        await executor_for(hub, []).run(Routine.from_data(data), "q", user_id="u-hr")


async def test_only_the_allowed_steps_tools_are_offered_to_a_constrained_backend(hub: ToolHub) -> None:
    executor = executor_for(hub, list(ADA_HR), constrain="next", tools_in_prompt="routine")
    result = await executor.run(SALARY, "Ada?", user_id="u-hr")
    assert result.ok
    constraints = executor.backend.constraints  # type: ignore[union-attr]
    assert [tuple(t.name for t in c.tools) for c in constraints] == [
        ("get_user_profile",), ("search_employee",), ("get_salary",), ("summarize",)]  # the role is hr: no band
    system = executor.backend.requests[0][0].content  # type: ignore[union-attr]
    tools = system.split("<tools>\n")[1].split("\n</tools>")[0]
    assert "get_salary_band" in tools and "delete_records" not in tools


async def test_the_next_constraint_writes_the_steps_bound_arguments(hub: ToolHub) -> None:
    """Under ``next`` the grammar pins what the Routine binds (the values would win anyway): the model
    writes only what is left, and a finish step's data keys are the ones the Routine names."""
    executor = executor_for(hub, list(ADA_HR), constrain="next", tools_in_prompt="routine")
    result = await executor.run(SALARY, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr")
    assert result.ok, result.error
    pinned = [{k: v["const"] for k, v in c.tools[0].parameters["properties"].items() if "const" in v}
              for c in executor.backend.constraints]  # type: ignore[union-attr]
    assert pinned == [{"user_id": "u-hr"}, {"name": "Ada"}, {"employee_id": "E-001"},
                      {"topic": "salary", "data": "memory_get_salary"}]
    summarize = executor.backend.constraints[-1].tools[0].parameters  # type: ignore[union-attr]
    assert set(summarize["required"]) >= {"topic", "data"}


# ---- bad model output: fed back, retried, bounded ------------------------------------------------
async def test_output_that_is_not_a_call_is_retried_then_the_run_fails_and_the_log_keeps_every_step(
    hub: ToolHub, runlog: RunLog
) -> None:
    prose = "Sure! I will look the employee up now."
    executor = executor_for(hub, [ADA_HR[0], prose, prose, prose], runlog, max_retries=2)
    result = await executor.run(SALARY, "Ada?", user_id="u-hr")
    assert not result.ok and result.error_kind == "model"
    assert result.error == ("the model made no acceptable call after 3 tries: no tool call found; answer with exactly "
                            'one <tool_call>{"name": ..., "arguments": {...}}</tool_call>')
    retry = executor.backend.requests[2]  # type: ignore[union-attr]
    assert retry[-2] == Message("assistant", prose)
    assert retry[-1].content.startswith("Your reply was not accepted: no tool call found")
    logged = runlog.get_run(result.run_id or "")
    assert logged["status"] == "failed" and logged["error"] == result.error
    assert [(s["step"], s["tool"], s["attempt"], s["error_kind"]) for s in logged["steps"]] == [
        ("1", "get_user_profile", 0, None), (None, None, 0, "model"), (None, None, 1, "model"), (None, None, 2, "model")]
    assert logged["steps"][0]["result"] == {"user_id": "u-hr", "role": "hr"}
    assert [s["raw_output"] for s in logged["steps"][1:]] == [prose] * 3


async def test_two_calls_in_one_turn_are_refused(hub: ToolHub, calls: Calls) -> None:
    both = call_text("get_user_profile", {"user_id": "u-hr"}) + "\n" + call_text("search_employee", {"name": "Ada"})
    executor = executor_for(hub, [both, *ADA_HR])
    result = await executor.run(SALARY, "Ada?", user_id="u-hr")
    assert result.ok
    (refused,) = [a for a in result.attempts if a.error]
    assert refused.extra["kind"] == "multiple_calls" and "exactly one call" in (refused.error or "")
    assert names_called(calls).count("get_user_profile") == 1


async def test_tolerant_parsing_accepts_code_fences_and_text_around_the_tag(hub: ToolHub) -> None:
    fenced = '```json\n{"name": "get_user_profile", "arguments": {"user_id": "u-hr"}}\n```'
    chatty = "Next I search.\n" + call_text("search_employee", {"name": "Ada"}) + "\nDone."
    result = await executor_for(hub, [fenced, chatty, *ADA_HR[2:]]).run(SALARY, "Ada?", user_id="u-hr")
    assert result.ok and not [a for a in result.attempts if a.error]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"user_id": 7}, "user_id: 7 is not of type 'string'"),
        ({}, "arguments: 'user_id' is a required property"),
        ({"user_id": "u-hr", "verbose": True}, "get_user_profile has no parameter(s) verbose; it takes user_id"),
        ({"user_id": "{{system.user_id}}"}, "arguments contain {{...}} templates; give the actual values"),
    ],
)
async def test_arguments_that_do_not_fit_the_schema_are_fed_back(
    hub: ToolHub, calls: Calls, bad: dict[str, Any], message: str
) -> None:
    executor = executor_for(hub, [{"name": "get_user_profile", "arguments": bad}, *ADA_HR])
    result = await executor.run(FREE, "Ada?", user_id="u-hr")
    assert result.ok
    (refused,) = [a for a in result.attempts if a.error]
    assert refused.extra["kind"] == "bad_arguments" and refused.error == message
    assert message in executor.backend.requests[1][-1].content  # type: ignore[union-attr]
    assert names_called(calls).count("get_user_profile") == 1


async def test_a_tool_error_is_fed_back_in_model_mode_and_fails_a_bound_run(hub: ToolHub) -> None:
    wrong = {"name": "search_employee", "arguments": {"name": "Grace"}}
    result = await executor_for(hub, [ADA_HR[0], wrong, *ADA_HR[1:]]).run(SALARY, "Ada?", user_id="u-hr")
    assert result.ok
    (failed,) = [a for a in result.attempts if a.error]
    assert failed.error_kind == "tool" and "no employee matches 'Grace'" in (failed.error or "")
    bound = await executor_for(hub).run(SALARY, "Grace?", inputs={"employee_name": "Grace"}, user_id="u-hr", mode="bound")
    assert not bound.ok and bound.error_kind == "tool"
    assert bound.error == "step 2: tool search_employee failed: no employee matches 'Grace'"


async def test_the_number_of_steps_is_bounded(hub: ToolHub) -> None:
    result = await executor_for(hub, max_steps=2).run(
        SALARY, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr", mode="bound")
    assert not result.ok and result.error == "the run did not finish within 2 steps"
    assert len(result.calls) == 2


# ---- bound mode fails clearly --------------------------------------------------------------------
async def test_bound_mode_fails_clearly_on_an_unbound_step(hub: ToolHub, runlog: RunLog) -> None:
    routine = Routine.from_data(unbound(json.loads(SALARY_ROUTINE.read_text()), "2"))
    result = await executor_for(hub, runlog=runlog).run(
        routine, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr", mode="bound")
    assert not result.ok and result.error_kind == "binding"
    assert result.error == "bound mode: step 2 is not fully bound; use hybrid or model mode"
    assert [s["step"] for s in runlog.get_run(result.run_id or "")["steps"]] == ["1"]


async def test_bound_mode_fails_clearly_on_a_branch_no_condition_decides(hub: ToolHub) -> None:
    data = json.loads(SALARY_ROUTINE.read_text())
    data["steps"][3].pop("when")
    result = await executor_for(hub).run(Routine.from_data(data), "Ada?", inputs={"employee_name": "Ada"},
                                      user_id="u-hr", mode="bound")
    assert not result.ok
    assert result.error == "bound mode: step 3-1_1/3-2_1 has a branch no 'when' condition decides; use hybrid or model mode"


async def test_a_mode_that_needs_a_model_without_one_is_the_callers_error(hub: ToolHub) -> None:
    with pytest.raises(CallerError, match="mode 'hybrid' needs a model backend"):
        await executor_for(hub).run(SALARY, "Ada?", user_id="u-hr", mode="hybrid")
    with pytest.raises(CallerError, match="unknown mode 'auto'"):
        await executor_for(hub).run(SALARY, "Ada?", user_id="u-hr", mode="auto")  # type: ignore[arg-type]


# ---- the prompt ----------------------------------------------------------------------------------
async def test_the_system_prompt_has_the_papers_parts(hub: ToolHub) -> None:
    executor = executor_for(hub, list(ADA_HR))
    await executor.run(SALARY, "What does Ada earn?", user_id="u-hr")
    system, user = executor.backend.requests[0][:2]  # type: ignore[union-attr]
    assert user == Message("user", "What does Ada earn?")
    text = system.content
    assert "- current user id: u-hr" in text
    assert "Make exactly one tool call per turn." in text
    assert "Step 2. Find employee: Search the employee by name, use the search_employee tool;" in text
    assert "- Branch 3-2 Step 1. Salary band: Otherwise get the salary band, use the get_salary_band tool;" in text
    for tag in ("<routines>", "</routines>", "<tools>", "</tools>", "<tool_call>"):
        assert tag in text
    assert "<variables>" not in text  # keys appear in the results' turns: the conversation is append-only
    assert text.index("<tools>") < text.index("<routines>") < text.index("current user id")


# ---- the Routine's bindings and guards hold in model mode too ---------------------------------------
async def test_model_mode_refuses_a_branch_whose_guard_is_false_and_never_calls_it(
    hub: ToolHub, calls: Calls, runlog: RunLog
) -> None:
    # A staff user: the "full salary" branch's guard is false; the model takes it anyway, then the band.
    replies = [ADA_HR[0] | {"arguments": {"user_id": "u-staff"}}, ADA_HR[1], ADA_HR[2],
               {"name": "get_salary_band", "arguments": {"employee_id": "E-001"}}, ADA_HR[3]]
    executor = executor_for(hub, replies, runlog)
    result = await executor.run(SALARY, "What does Ada earn?", user_id="u-staff")
    assert result.ok, result.error
    assert tools_of(result) == ["get_user_profile", "search_employee", "get_salary_band", "summarize"]
    assert "get_salary" not in names_called(calls)  # the refused call never reached the server
    (refused,) = [a for a in result.attempts if a.error]
    assert refused.extra["kind"] == "guard_false" and refused.tool is None
    assert refused.error == ("step 3-1_1 (get_salary) is a branch whose condition does not hold; "
                             "the next call is get_salary_band (step 3-2_1)")
    feedback = executor.backend.requests[3][-1]  # type: ignore[union-attr]
    assert feedback.role == "user" and "get_salary_band (step 3-2_1)" in feedback.content
    assert result.answer == "salary: band=B4, employee_id=E-001, name=Ada Lovelace"


async def test_a_model_that_insists_on_a_closed_branch_fails_the_run(hub: ToolHub, calls: Calls) -> None:
    replies = [ADA_HR[0], ADA_HR[1], *[{"name": "get_salary_band", "arguments": {"employee_id": "E-001"}}] * 3]
    result = await executor_for(hub, replies).run(SALARY, "Ada's band?", user_id="u-hr")  # hr: the band branch is closed
    assert not result.ok and result.error_kind == "model"
    assert "condition does not hold" in (result.error or "")
    assert names_called(calls) == ["get_user_profile", "search_employee"]


async def test_model_mode_puts_the_bound_values_over_the_models_and_keeps_what_it_wrote(
    hub: ToolHub, calls: Calls, runlog: RunLog
) -> None:
    # The model asks for another user's profile and another employee, and copies the salary result.
    replies = [{"name": "get_user_profile", "arguments": {"user_id": "u-admin"}},
               {"name": "search_employee", "arguments": {"name": "Alan"}},
               ADA_HR[2],
               {"name": "summarize", "arguments": {"topic": "pay", "data": {"salary": 1}}}]
    executor = executor_for(hub, replies, runlog)
    result = await executor.run(SALARY, "What does Ada earn?", inputs={"employee_name": "Ada"}, user_id="u-hr")
    assert result.ok, result.error
    assert calls[1:3] == [("get_user_profile", {"user_id": "u-hr"}), ("search_employee", {"name": "Ada"})]
    assert [c.arguments for c in result.calls] == [
        {"user_id": "u-hr"}, {"name": "Ada"}, {"employee_id": "E-001"}, {"topic": "salary", "data": "memory_get_salary"}]
    assert [a.extra.get("model_arguments") for a in result.attempts] == [
        {"user_id": "u-admin"}, {"name": "Alan"}, None, {"topic": "pay", "data": {"salary": 1}}]
    assert result.answer == "salary: employee_id=E-001, name=Ada Lovelace, salary=98000"
    # the history the model sees next holds the call as made, and the run log keeps what the model wrote
    assert executor.backend.requests[1][2] == Message("assistant", call_text("get_user_profile", {"user_id": "u-hr"}))  # type: ignore[union-attr]
    assert '"u-admin"' in runlog.get_run(result.run_id or "")["steps"][0]["raw_output"]


# ---- constraints ----------------------------------------------------------------------------------
def _guards_removed() -> Routine:
    data = json.loads(SALARY_ROUTINE.read_text())
    for step in data["steps"]:
        step.pop("when", None)  # the model decides the branch
    return Routine.from_data(data)


async def test_the_next_constraint_at_a_branch_holds_the_open_branches_first_tools_only(hub: ToolHub) -> None:
    replies = [*ADA_HR[:2], {"name": "get_salary_band", "arguments": {"employee_id": "E-001"}}, ADA_HR[3]]
    executor = executor_for(hub, replies, constrain="next")
    result = await executor.run(_guards_removed(), "Ada?", user_id="u-hr")
    assert result.ok, result.error
    constraints = executor.backend.constraints  # type: ignore[union-attr]
    assert [tuple(t.name for t in c.tools) for c in constraints] == [
        ("get_user_profile",), ("search_employee",), ("get_salary", "get_salary_band"), ("summarize",)]
    assert [c.next_tools for c in result.calls] == [
        ("get_user_profile",), ("search_employee",), ("get_salary", "get_salary_band"), ("summarize",)]
    # With the guards, a staff user's branch point leaves one branch open.
    staff = [ADA_HR[0] | {"arguments": {"user_id": "u-staff"}}, ADA_HR[1],
             {"name": "get_salary_band", "arguments": {"employee_id": "E-001"}}, ADA_HR[3]]
    executor = executor_for(hub, staff, constrain="next")
    assert (await executor.run(SALARY, "Ada?", user_id="u-staff")).ok
    assert [c.tools[0].name for c in executor.backend.constraints] == [  # type: ignore[union-attr]
        "get_user_profile", "search_employee", "get_salary_band", "summarize"]
    assert all(len(c.tools) == 1 for c in executor.backend.constraints)  # type: ignore[union-attr]


@pytest.mark.parametrize(("constrain", "expected"), [(True, "routine"), ("routine", "routine"), (False, None), ("none", None)])
async def test_the_routine_constraint_admits_any_tool_the_prompt_lists(hub: ToolHub, constrain: Any, expected: Any) -> None:
    executor = executor_for(hub, list(ADA_HR), constrain=constrain)
    assert (await executor.run(SALARY, "Ada?", user_id="u-hr")).ok
    names = ["get_user_profile", "search_employee", "get_salary", "get_salary_band", "summarize"]  # servers' order
    got = [None if c is None else [t.name for t in c.tools] for c in executor.backend.constraints]  # type: ignore[union-attr]
    assert got == [names if expected else None] * 4
    with pytest.raises(CallerError, match="unknown constraint mode 'always'"):
        ExecutorConfig(constrain="always")  # type: ignore[arg-type]


# ---- the conversation is append-only ----------------------------------------------------------------
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
"""SmolLM2's chat format (ChatML), as a chat template."""


@pytest.mark.parametrize("tools_in_prompt", ["routine", "all"])
@pytest.mark.parametrize("which", ["salary", "team"])
async def test_each_steps_prompt_is_the_previous_one_plus_its_call_and_result(
    hub: ToolHub, which: str, tools_in_prompt: str
) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from routines.backends.chat import END_OF_TURN, render_prompt

    team = [{"name": "list_team", "arguments": {"team": "red"}},
            {"name": "count_members", "arguments": {"members": "memory_members"}},
            {"name": "summarize", "arguments": {"topic": "team size", "data": "memory_count_members"}}]
    routine, replies = (SALARY, ADA_HR) if which == "salary" else (TEAM, team)
    executor = executor_for(hub, list(replies), memory_threshold=100, tools_in_prompt=tools_in_prompt)
    result = await executor.run(routine, "What does Ada earn?" if which == "salary" else "How big is red?",
                                inputs=None if which == "salary" else {"team": "red"}, user_id="u-hr")
    assert result.ok, result.error
    requests = executor.backend.requests  # type: ignore[union-attr]
    assert len(requests) == len(result.calls) == len(replies)
    chatml = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), chat_template=CHATML)
    for k in range(len(requests) - 1):
        call = result.calls[k]
        turn = [Message("assistant", call_text(call.tool, call.arguments)), Message("tool", call.observation)]
        assert requests[k + 1] == requests[k] + turn
        # the text the embedded model reads before call k, then call k as its training target, begins the text
        # before call k + 1: one training sequence teaches every call of the run
        before, after = render_prompt(chatml, requests[k]), render_prompt(chatml, requests[k + 1])
        assert after.startswith(before + turn[0].content + END_OF_TURN)
    if which == "team":  # the new key is shown in the turn that created it, the system prompt stays put
        assert requests[1][-1].content.startswith('memory_list_team = {"team": "red", "members": "memory_members"}\n'
                                                  'memory_members = ["Red Member 01"')


# ---- the run log and step callbacks --------------------------------------------------------------
async def test_every_step_is_logged_and_reported_as_it_happens(hub: ToolHub, runlog: RunLog) -> None:
    seen: list[StepRecord] = []
    executor = executor_for(hub, ["no call", *ADA_HR], runlog)
    result = await executor.run(SALARY, "Ada?", user_id="u-hr", on_step=seen.append)
    run = runlog.get_run(result.run_id or "")
    assert (run["routine_id"], run["mode"], run["backend"], run["user_id"], run["status"], run["answer"]) == (
        "example.salary", "model", "scripted", "u-hr", "finished", result.answer)
    assert [s["tool"] for s in run["steps"]] == [None, "get_user_profile", "search_employee", "get_salary", "summarize"]
    assert [r.tool for r in seen] == [s["tool"] for s in run["steps"]]
    assert all(s["prompt_tokens"] > 0 and s["prompt_chars"] > 0 for s in run["steps"])
    assert run["steps"][1]["attempt"] == 1 and run["steps"][2]["attempt"] == 0
    assert run["steps"][3]["result"] == {"employee_id": "E-001", "name": "Ada Lovelace", "salary": 98000}


async def test_a_backend_bug_is_raised_and_the_run_log_still_closes_the_run(hub: ToolHub, runlog: RunLog) -> None:
    executor = executor_for(hub, [ADA_HR[0]], runlog)
    with pytest.raises(RuntimeError, match="ran out of replies"):
        await executor.run(SALARY, "Ada?", user_id="u-hr")
    (row,) = runlog.list_runs()
    assert row["status"] == "failed" and row["steps"] == 1
    assert row["error"].startswith("internal error: RuntimeError: ScriptedBackend ran out of replies")




async def test_a_conversation_too_long_for_the_model_fails_the_run_and_says_so(hub: ToolHub, runlog: RunLog) -> None:
    """Not an internal error: the run is failed and logged with what to change."""
    from memory.variables import VariableMemory
    from routines.backends.base import BaseBackend, Completion, Constraint
    from routines.errors import PromptTooLong
    from routines.executor import Executor

    class SmallContext(BaseBackend):
        name = "small-context"

        async def complete(self, messages: Any, *, constraint: Constraint | None = None, max_tokens: int = 512) -> Completion:
            raise PromptTooLong("conversation 0 is 9000 tokens long; the model takes at most 8191", (0,))

    executor = Executor(hub, SmallContext(), ExecutorConfig(extract_inputs=False), runlog, variables=VariableMemory)
    result = await executor.run(SALARY, "Ada's salary", user_id="u-hr", mode="model")
    assert not result.ok and result.error_kind == "context"
    assert (result.error or "").startswith("model context: conversation 0 is 9000 tokens long")
    assert runlog.get_run(result.run_id or "")["status"] == "failed"
