"""The Routine model: step labels, one-line text fields, navigation, loading and the JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from routines.model import Label, Routine, Step, routine_json_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"


@pytest.fixture
def salary() -> Routine:
    return Routine.from_file(EXAMPLES / "salary.json")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("1", Label(1)),
        ("12", Label(12)),
        ("3-1_1", Label(3, 1, 1)),
        ("3-2_4", Label(3, 2, 4)),
        (" 4 ", Label(4)),
    ],
)
def test_label_parses_main_and_branch_labels(text: str, label: Label) -> None:
    assert Label.parse(text) == label
    assert str(label) == text.strip()
    assert label.is_branch == ("-" in text)


@pytest.mark.parametrize("text", ["", "x", "3-1", "3_1", "3-1-1", "1.", "step 1", "3-0_1"])
def test_label_rejects_other_forms_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="label"):
        Label.parse(text)


def test_labels_order_main_steps_before_their_branches() -> None:
    labels = [Label.parse(t) for t in ["4", "3-2_1", "3", "3-1_2", "3-1_1", "10"]]
    assert [str(x) for x in sorted(labels)] == ["3", "3-1_1", "3-1_2", "3-2_1", "4", "10"]


def test_step_label_is_stored_in_canonical_form() -> None:
    assert Step(step=3, name="x").step == "3"
    assert Step(step="03", name="x").step == "3"
    assert Step(step="3-01_1", name="x").label == Label(3, 1, 1)
    assert Step(step="3-01_1", name="x").step == "3-1_1"


def test_step_with_bad_label_is_a_validation_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="step label 'first'"):
        Step(step="first", name="x")


def test_text_fields_are_kept_on_one_line() -> None:
    step = Step(step="1", name="  Find\nemployee ", description="Search\n\n  by   name", input="the\tname")
    assert step.name == "Find employee"
    assert step.description == "Search by name"
    assert step.input == "the name"
    routine = Routine(name="Salary\nenquiry", description="line one\nline two", steps=[step])
    assert routine.name == "Salary enquiry"
    assert routine.description == "line one line two"


def test_empty_io_description_means_not_described() -> None:
    step = Step(step="1", name="x", input="  ", output="")
    assert step.input is None and step.output is None


def test_tool_is_normalised_and_a_list_kept_for_validation_to_report() -> None:
    assert Step(step="1", name="x", tool="  get_salary ").tool == "get_salary"
    assert Step(step="1", name="x", tool="").tool is None
    assert Step(step="1", name="x", tool=["a", "b"]).tool == "a, b"


def test_unknown_fields_and_types_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Step(step="1", name="x", tools="a")
    with pytest.raises(ValidationError, match="type"):
        Step(step="1", name="x", type="loop")
    with pytest.raises(ValidationError):
        Routine(steps=[], owner="me")


def test_example_loads_with_our_fields(salary: Routine) -> None:
    assert salary.id == "example.salary"
    assert [s.step for s in salary.steps] == ["1", "2", "3", "3-1_1", "3-2_1", "4"]
    assert salary.step("2").args == {"name": "{{inputs.employee_name}}"}
    assert salary.step("3-1_1").when is not None
    assert salary.inputs is not None and "employee_name" in salary.inputs["properties"]


def test_navigation(salary: Routine) -> None:
    assert [s.step for s in salary.main_steps()] == ["1", "2", "3", "4"]
    assert {n: [s.step for s in steps] for n, steps in salary.branches(3).items()} == {
        1: ["3-1_1"],
        2: ["3-2_1"],
    }
    assert salary.branches(2) == {}
    assert salary.tools() == [
        "get_user_profile",
        "search_employee",
        "get_salary",
        "get_salary_band",
        "summarize",
    ]
    assert salary.has_branches
    assert [s.step for s in salary.walk()] == [s.step for s in salary.steps]
    with pytest.raises(KeyError, match="no step '9'"):
        salary.step("9")


def test_branches_come_back_in_label_order_whatever_the_document_order() -> None:
    routine = Routine(
        steps=[
            Step(step="1", name="b", type="branch"),
            Step(step="1-2_1", name="y", tool="t", type="branchnode"),
            Step(step="1-1_2", name="x2", tool="t", type="branchnode"),
            Step(step="1-1_1", name="x1", tool="t", type="branchnode"),
        ]
    )
    assert {n: [s.step for s in steps] for n, steps in routine.branches(1).items()} == {
        1: ["1-1_1", "1-1_2"],
        2: ["1-2_1"],
    }


def test_the_papers_bare_list_of_steps_loads() -> None:
    routine = Routine.from_data(
        [
            {"step": "1", "name": "Get announcements", "tool": "fetch_latest_announcements", "type": "node"},
            {"step": "2", "name": "Compare", "tool": "compare_texts", "type": "finish"},
        ]
    )
    assert routine.id is None
    assert [s.type for s in routine.steps] == ["node", "finish"]


def test_json_round_trip(salary: Routine, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(salary.to_json(), encoding="utf-8")
    assert Routine.from_file(path) == salary
    assert "null" not in salary.to_json()  # unset optional fields are left out


def test_json_schema_describes_every_field() -> None:
    schema = routine_json_schema()
    assert set(schema["properties"]) == {"id", "name", "version", "description", "inputs", "steps"}
    step = schema["$defs"]["Step"]
    assert set(step["properties"]) == {
        "step", "name", "description", "tool", "type", "input", "output", "args", "when",
    }  # fmt: skip
    assert step["properties"]["type"]["enum"] == ["node", "branch", "branchnode", "finish"]
    assert all(p.get("description") for p in step["properties"].values())
    json.dumps(schema)  # serialisable as it is
