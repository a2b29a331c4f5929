"""The planner with ``ScriptedBackend``: accepted answers, repairs through the loop, and giving up cleanly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from routines.backends.scripted import ScriptedBackend
from routines.planner import (
    PlanParseError,
    extract_routine_data,
    plan,
    planning_prompt,
    routine_schema,
)
from routines.validate import load_tools

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"
DRAFT = """Salary enquiry: look up who is asking, find the employee, HR staff see the salary,
everyone else only the salary band; then summarise."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tools() -> list[Any]:
    return load_tools(EXAMPLES / "tools.json")


@pytest.fixture
def answer() -> dict[str, Any]:
    """A good planner answer (the example Routine without bindings, id and version)."""
    data = json.loads((EXAMPLES / "salary.json").read_text())
    for key in ("id", "inputs"):
        data.pop(key)
    for step in data["steps"]:
        step.pop("args", None)
        step.pop("when", None)
    return data


@pytest.mark.anyio
async def test_good_answer_is_accepted_first_time(tools: list[Any], answer: dict[str, Any]) -> None:
    backend = ScriptedBackend([json.dumps(answer)])
    result = await plan(DRAFT, tools, backend)
    assert result.ok and len(result.attempts) == 1
    assert result.routine is not None and result.routine.name == "Salary enquiry"
    assert [s.tool for s in result.routine.steps] == [
        "get_user_profile", "search_employee", None, "get_salary", "get_salary_band", "summarize"]
    assert "Branch 3-2 Step 1. Salary band" in result.text
    assert result.text.splitlines()[-1].endswith("and end the workflow;")
    constraint = backend.constraints[0]
    assert constraint is not None and constraint.json_schema is not None
    tool_enum = constraint.json_schema["properties"]["steps"]["items"]["properties"]["tool"]["enum"]
    assert set(tool_enum) == {t.name for t in tools}


@pytest.mark.anyio
async def test_unknown_tool_is_repaired_through_the_loop(tools: list[Any], answer: dict[str, Any]) -> None:
    wrong = copy.deepcopy(answer)
    wrong["steps"][1]["tool"] = "lookup_employee"
    backend = ScriptedBackend([f"Here is the Routine:\n```json\n{json.dumps(wrong, indent=1)}\n```\nDone.",
                               json.dumps(answer)])
    result = await plan(DRAFT, tools, backend)
    assert result.ok and len(result.attempts) == 2
    assert result.attempts[0].report.codes() >= {"unknown_tool"}
    feedback = backend.requests[1][-1]
    assert feedback.role == "user"
    assert "lookup_employee" in feedback.content and "did you mean search_employee" in feedback.content
    assert backend.requests[1][-2].role == "assistant"  # the rejected answer is part of the conversation


@pytest.mark.anyio
async def test_answer_that_never_validates_ends_with_the_report(tools: list[Any], answer: dict[str, Any]) -> None:
    wrong = copy.deepcopy(answer)
    wrong["steps"][1]["tool"] = "lookup_employee"
    backend = ScriptedBackend([json.dumps(wrong)] * 3)
    result = await plan(DRAFT, tools, backend, max_repairs=2)
    assert not result.ok
    assert len(result.attempts) == 3 and len(backend.requests) == 3
    assert [f.code for f in result.report.errors] == ["unknown_tool"]
    assert result.routine is not None and result.routine.step("2").tool == "lookup_employee"
    assert "use the lookup_employee tool" in result.text


@pytest.mark.anyio
async def test_unreadable_answers_end_without_a_routine(tools: list[Any]) -> None:
    backend = ScriptedBackend(["I cannot help with that.", '{"steps": [ {"step": "1", ', "still no JSON"])
    result = await plan(DRAFT, tools, backend, max_repairs=2)
    assert not result.ok and result.routine is None
    assert result.report.codes() == {"unreadable"}
    assert result.text == "still no JSON"
    assert "could not be read as a Routine" in backend.requests[1][-1].content


@pytest.mark.anyio
async def test_readable_answer_is_kept_when_a_later_one_is_unreadable(tools: list[Any], answer: dict[str, Any]) -> None:
    wrong = copy.deepcopy(answer)
    del wrong["steps"][-1]  # no finish step
    backend = ScriptedBackend([json.dumps(wrong), "sorry"])
    result = await plan(DRAFT, tools, backend, max_repairs=1)
    assert not result.ok and result.routine is not None
    assert "no_finish" in result.report.codes()


@pytest.mark.anyio
async def test_bad_field_values_are_fed_back(tools: list[Any], answer: dict[str, Any]) -> None:
    wrong = copy.deepcopy(answer)
    wrong["steps"][0]["step"] = "first"
    backend = ScriptedBackend([json.dumps(wrong), json.dumps(answer)])
    result = await plan(DRAFT, tools, backend)
    assert result.ok and len(result.attempts) == 2
    assert "bad_field" in result.attempts[0].report.codes()
    assert "'first'" in backend.requests[1][-1].content


@pytest.mark.anyio
async def test_bind_asks_for_bindings_and_repairs_a_forward_reference(tools: list[Any]) -> None:
    bound = json.loads((EXAMPLES / "salary.json").read_text())
    bound.pop("id")
    bound.pop("inputs")  # the planner declares the inputs the bindings use
    wrong = copy.deepcopy(bound)
    wrong["steps"][1]["args"] = {"name": "{{steps.4.text}}"}
    backend = ScriptedBackend([json.dumps(wrong), json.dumps(bound)])
    result = await plan(DRAFT, tools, backend, bind=True)
    assert "{{inputs.NAME}}" in backend.requests[0][0].content
    assert result.attempts[0].report.codes() >= {"forward_ref"}
    assert result.ok and result.routine is not None
    assert result.routine.step("2").args == {"name": "{{inputs.employee_name}}"}
    assert result.routine.inputs is not None and "employee_name" in result.routine.inputs["properties"]


@pytest.mark.anyio
async def test_harmless_slips_are_forgiven(tools: list[Any], answer: dict[str, Any]) -> None:
    sloppy = copy.deepcopy(answer)
    sloppy["steps"][0]["type"] = "Node"
    sloppy["steps"][2]["tool"] = "none"
    sloppy["steps"][0]["comment"] = "extra"
    result = await plan(DRAFT, tools, ScriptedBackend([json.dumps(sloppy)]))
    assert result.ok
    assert "ignored_field" in result.report.codes()


@pytest.mark.anyio
async def test_nameless_answer_takes_the_draft_title(tools: list[Any], answer: dict[str, Any]) -> None:
    result = await plan(DRAFT, tools, ScriptedBackend([json.dumps(answer["steps"])]))
    assert result.ok and result.routine is not None
    assert result.routine.name == "Salary enquiry"


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "R", "steps": [{"step": "1", "name": "A", "tool": "t", "type": "finish"}]}',
        'Sure.\n```json\n{"name": "R", "steps": [{"step": "1", "name": "A", "tool": "t", "type": "finish"}]}\n```',
        '<think>a list [1, 2]</think>[{"step": "1", "name": "A", "tool": "t", "type": "finish"}]',
        'The plan: {"routine": {"name": "R", "steps": [{"step": "1", "name": "A", "tool": "t", "type": "finish",},]}}',
    ],
    ids=["object", "fence-and-prose", "think-and-bare-list", "wrapped-trailing-commas"],
)
def test_extraction_is_tolerant(text: str) -> None:
    data = extract_routine_data(text)
    assert data["steps"][0]["name"] == "A"


@pytest.mark.parametrize("text", ["", "no json here", '{"answer": 42}'])
def test_extraction_says_what_is_missing(text: str) -> None:
    with pytest.raises(PlanParseError):
        extract_routine_data(text)


def test_prompt_has_the_parts_of_a1(tools: list[Any]) -> None:
    prompt = planning_prompt(DRAFT, tools)
    for part in ('"type": "branch"', "x-n_i", '"finish"', '"input"', '"output"', "exactly one tool", DRAFT.strip()):
        assert part in prompt
    assert all(t.name in prompt for t in tools)
    assert "{{steps.N.PATH}}" not in prompt
    assert "{{steps.N.PATH}}" in planning_prompt(DRAFT, tools, bind=True)


def test_schema_caps_strings_and_forbids_extra_fields(tools: list[Any]) -> None:
    schema = routine_schema(tools, bind=True)
    step = schema["properties"]["steps"]["items"]
    assert step["additionalProperties"] is False and schema["additionalProperties"] is False
    assert step["properties"]["description"]["maxLength"] <= 300
    assert "args" in step["properties"] and "inputs" in schema["properties"]


def test_planner_needs_tools() -> None:
    with pytest.raises(ValueError, match="tool list"):
        planning_prompt(DRAFT, [])
