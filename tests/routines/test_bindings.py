"""Argument bindings resolved against run state: typed whole values, text substitution, paths, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from routines.bindings import (
    BindingError,
    Ref,
    RunState,
    evaluate_when,
    is_bound,
    iter_refs,
    resolve,
    resolve_args,
)
from routines.model import Step


@pytest.fixture
def state() -> RunState:
    return RunState(
        inputs={"employee_name": "Ada Lovelace", "year": 2024, "urgent": False},
        system={"user_id": "u-17"},
        steps={
            "1": {"role": "hr", "teams": ["payroll", "people"]},
            "2": {
                "matches": [{"employee_id": "E-3", "score": 0.9}, {"employee_id": "E-8", "score": 0.4}],
                "n": 2,
            },
            "3-1_1": {"salary": 5200.5, "currency": "EUR", "note": None},
            "3": {"salary": 5200.5, "currency": "EUR", "note": None},
            "4": "plain text output",
        },
    )


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("{{inputs.employee_name}}", "Ada Lovelace"),
        ("{{inputs.year}}", 2024),
        ("{{inputs.urgent}}", False),
        ("{{system.user_id}}", "u-17"),
        ("{{steps.1.teams}}", ["payroll", "people"]),
        ("{{steps.2.matches.0.employee_id}}", "E-3"),
        ("{{steps.2.matches.1.score}}", 0.4),
        ("{{steps.2.matches.-1.employee_id}}", "E-8"),
        ("{{steps.3-1_1.salary}}", 5200.5),
        ("{{steps.3.note}}", None),
        ("{{steps.4}}", "plain text output"),
        ("  {{ steps.2.n }} ", 2),
    ],
)
def test_a_whole_reference_keeps_its_type(state: RunState, template: str, value: Any) -> None:
    assert resolve(template, state) == value
    assert type(resolve(template, state)) is type(value)


def test_the_whole_output_of_a_step(state: RunState) -> None:
    assert resolve("{{steps.1}}", state) == {"role": "hr", "teams": ["payroll", "people"]}


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("Salary of {{inputs.employee_name}} for {{inputs.year}}", "Salary of Ada Lovelace for 2024"),
        ("id={{steps.2.matches.0.employee_id}};by={{system.user_id}}", "id=E-3;by=u-17"),
        ("teams: {{steps.1.teams}}", 'teams: ["payroll", "people"]'),
        ("urgent={{inputs.urgent}} note={{steps.3.note}}", "urgent=false note=null"),
        ("no references here", "no references here"),
        ("{{inputs.employee_name}}{{inputs.year}}", "Ada Lovelace2024"),
    ],
)
def test_references_inside_text_are_substituted(state: RunState, template: str, text: str) -> None:
    assert resolve(template, state) == text


def test_nested_arguments_and_other_values(state: RunState) -> None:
    args = {
        "employee_id": "{{steps.2.matches.0.employee_id}}",
        "filters": {"year": "{{inputs.year}}", "teams": ["{{steps.1.teams.0}}", "fixed"]},
        "limit": 5,
        "flag": True,
        "nothing": None,
    }
    assert resolve_args(args, state) == {
        "employee_id": "E-3",
        "filters": {"year": 2024, "teams": ["payroll", "fixed"]},
        "limit": 5,
        "flag": True,
        "nothing": None,
    }
    assert resolve_args(None, state) == {}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{inputs.department}}", r"inputs has no 'department' \(it has: employee_name, year, urgent\)"),
        ("{{system.tenant}}", "system has no 'tenant'"),
        ("{{steps.9.x}}", r"steps has no '9' \(it has: 1, 2, 3-1_1, 3, 4\)"),
        ("{{steps.2.matches.5.employee_id}}", r"index 5 is out of range for steps.2.matches \(length 2\)"),
        ("{{steps.2.matches.first}}", "cannot take 'first' of steps.2.matches, which is a list"),
        ("{{steps.2.n.value}}", "cannot take 'value' of steps.2.n, which is a int"),
        ("{{steps.3.note.text}}", "cannot take 'text' of steps.3.note, which is a NoneType"),
        ("{{steps.2.matches.²}}", "cannot take '²'"),
        ("{{user.name}}", "unknown reference root 'user'.*use one of inputs, system, steps"),
        ("{{steps}}", r"needs a name, e.g. \{\{steps.2"),
        ("Hello {{inputs.nobody}}!", "inputs has no 'nobody'"),
    ],
)
def test_unknown_names_and_paths_are_clear_errors(state: RunState, template: str, message: str) -> None:
    with pytest.raises(BindingError, match=message):
        resolve(template, state)


def test_binding_error_is_a_value_error() -> None:
    assert issubclass(BindingError, ValueError)


def test_iter_refs_finds_every_reference() -> None:
    refs = list(
        iter_refs({"a": "{{inputs.x}} and {{steps.2.rows.0}}", "b": ["{{system.user_id}}", 3], "c": None})
    )
    assert refs == [Ref("inputs", ("x",)), Ref("steps", ("2", "rows", "0")), Ref("system", ("user_id",))]
    assert refs[1].step == "2" and refs[0].step is None
    assert str(refs[1]) == "{{steps.2.rows.0}}"
    with pytest.raises(BindingError, match="unknown reference root"):
        list(iter_refs(["{{env.HOME}}"]))


def test_is_bound() -> None:
    schema = {"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a", "b"]}
    assert is_bound(Step(step="1", name="x", tool="t", args={"a": 1, "b": "{{inputs.b}}"}), schema)
    assert not is_bound(Step(step="1", name="x", tool="t", args={"a": 1}), schema)
    assert not is_bound(Step(step="1", name="x", tool="t"), schema)
    assert is_bound(Step(step="1", name="x", tool="t", args={}), {"type": "object"})
    assert is_bound(Step(step="1", name="x", tool="t", args={}))
    assert not is_bound(Step(step="1", name="x", type="branch", args={}))


def test_evaluate_when_uses_run_state(state: RunState) -> None:
    assert evaluate_when("{{steps.1.role}} == 'HR'", state)
    assert not evaluate_when("{{inputs.urgent}}", state)
    with pytest.raises(BindingError, match="steps has no '7'"):
        evaluate_when("{{steps.7.ok}}", state)
