"""Flattening: one unbranched variant per combination of branches, renumbered, with references rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from routines.flatten import branch_points, flatten, linearize, variant_id
from routines.model import Routine, Step
from routines.validate import load_tools, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"


@pytest.fixture
def salary() -> Routine:
    return Routine.from_file(EXAMPLES / "salary.json")


def shape(routine: Routine) -> list[tuple[str, str, str | None]]:
    return [(s.step, s.type, s.tool) for s in routine.steps]


def test_salary_flattens_into_two_variants(salary: Routine) -> None:
    variants = flatten(salary)
    assert [v.id for v in variants] == ["example.salary/3-1", "example.salary/3-2"]
    assert [v.name for v in variants] == ["Salary enquiry - Full salary", "Salary enquiry - Salary band"]
    assert shape(variants[0]) == [
        ("1", "node", "get_user_profile"),
        ("2", "node", "search_employee"),
        ("3", "node", "get_salary"),
        ("4", "finish", "summarize"),
    ]
    assert shape(variants[1])[2] == ("3", "node", "get_salary_band")


def test_variants_drop_conditions_and_keep_everything_else(salary: Routine) -> None:
    for variant in flatten(salary):
        assert not variant.has_branches
        assert all(s.when is None for s in variant.steps)
        assert variant.description == salary.description and variant.inputs == salary.inputs
        assert variant.step("2").input == "employee name from the question"


def test_branch_point_alias_points_at_the_branch_that_ran(salary: Routine) -> None:
    """``{{steps.3}}`` in step 4 means "the output of whichever branch of step 3 ran"."""
    for variant in flatten(salary):
        assert variant.step("4").args == {"topic": "salary", "data": "{{steps.3}}"}
        assert variant.step("3").args == {"employee_id": "{{steps.2.employee_id}}"}


def test_variants_are_valid_routines(salary: Routine) -> None:
    tools = load_tools(EXAMPLES / "tools.json")
    for variant in flatten(salary):
        assert validate(variant, tools).findings == []


def two_branch_points() -> Routine:
    def s(label: str, tool: str | None = None, kind: str = "node", **more: object) -> Step:
        return Step(step=label, name=f"S{label}", tool=tool, type=kind, **more)  # type: ignore[arg-type]

    return Routine(
        id="x.two",
        name="Two",
        steps=[
            s("1", "a"),
            s("2", kind="branch"),
            s("2-1_1", "b", "branchnode", when="steps.1.ok", args={"v": "{{steps.1.v}}"}),
            s("2-1_2", "c", "branchnode", args={"v": "{{steps.2-1_1.v}}", "w": "x {{ steps.2-1_1 }} y"}),
            s("2-2_1", "d", "branchnode", args={"v": ["{{steps.1}}"]}),
            s("3", "e", args={"prev": "{{steps.2.v}}", "first": "{{steps.1.v}}"}),
            s("4", kind="branch"),
            s("4-1_1", "f", "finish", args={"all": {"p": "{{steps.3}}", "q": "{{steps.2}}"}}),
            s("4-2_1", "g", "branchnode"),
            s("4-2_2", "h", "finish", args={"v": "{{steps.4-2_1.v}}"}),
        ],
    )


def test_every_combination_of_branches() -> None:
    routine = two_branch_points()
    assert branch_points(routine) == [2, 4]
    variants = flatten(routine)
    assert [v.id for v in variants] == ["x.two/2-1+4-1", "x.two/2-1+4-2", "x.two/2-2+4-1", "x.two/2-2+4-2"]
    assert [[s.tool for s in v.steps] for v in variants] == [
        ["a", "b", "c", "e", "f"],
        ["a", "b", "c", "e", "g", "h"],
        ["a", "d", "e", "f"],
        ["a", "d", "e", "g", "h"],
    ]
    for v in variants:
        assert [s.step for s in v.steps] == [str(i) for i in range(1, len(v.steps) + 1)]
        assert v.steps[-1].type == "finish"
        assert all(s.type in ("node", "finish") for s in v.steps)


def test_references_follow_the_renumbering() -> None:
    long_first, _, short_first, short_both = flatten(two_branch_points())
    # 2-1_1 -> 2, 2-1_2 -> 3, 3 -> 4, 4-1_1 -> 5
    assert long_first.step("3").args == {"v": "{{steps.2.v}}", "w": "x {{ steps.2 }} y"}
    assert long_first.step("4").args == {"prev": "{{steps.3.v}}", "first": "{{steps.1.v}}"}
    assert long_first.step("5").args == {"all": {"p": "{{steps.4}}", "q": "{{steps.3}}"}}
    # 2-2_1 -> 2, 3 -> 3, 4-2_1 -> 4, 4-2_2 -> 5
    assert short_first.step("2").args == {"v": ["{{steps.1}}"]}
    assert short_first.step("3").args == {"prev": "{{steps.2.v}}", "first": "{{steps.1.v}}"}
    assert short_both.step("5").args == {"v": "{{steps.4.v}}"}


def test_a_finish_inside_a_branch_ends_the_variant() -> None:
    routine = Routine(
        id="x.stop",
        steps=[
            Step(step="1", name="a", tool="a"),
            Step(step="2", name="b", type="branch"),
            Step(step="2-1_1", name="stop", tool="stop", type="finish"),
            Step(step="2-1_2", name="never", tool="never", type="branchnode"),
            Step(step="2-2_1", name="go", tool="go", type="branchnode"),
            Step(step="3", name="end", tool="end", type="finish"),
        ],
    )
    stop, go = flatten(routine)
    assert [s.tool for s in stop.steps] == ["a", "stop"]
    assert [s.tool for s in go.steps] == ["a", "go", "end"]


def test_linearize_picks_one_variant_and_refuses_a_missing_choice(salary: Routine) -> None:
    assert linearize(salary, {3: 2}).id == "example.salary/3-2"
    with pytest.raises(ValueError, match="choose a branch of step 3: one of \\[1, 2\\]"):
        linearize(salary, {})
    with pytest.raises(ValueError, match="not 5"):
        linearize(salary, {3: 5})


def test_unbranched_routine_is_its_own_only_variant() -> None:
    routine = Routine(id="x.flat", steps=[Step(step="1", name="a", tool="a", type="finish")])
    assert flatten(routine) == [routine]
    assert variant_id(routine, {}) == "x.flat"


def test_variant_id_without_an_id_uses_the_name() -> None:
    assert variant_id(Routine(name="Salary", steps=[]), {3: 1}) == "Salary/3-1"
    assert variant_id(Routine(steps=[]), {3: 1, 1: 2}) == "routine/1-2+3-1"


def test_flattening_leaves_the_original_alone(salary: Routine) -> None:
    before = salary.model_dump()
    variants = flatten(salary)
    variants[0].steps[0].args["user_id"] = "changed"  # type: ignore[index]
    assert variants[0].inputs is not None
    variants[0].inputs["properties"]["extra"] = {"type": "string"}
    assert salary.model_dump() == before
