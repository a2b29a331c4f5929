"""The cursor: which steps may come next in a Routine, and which branch a ``when`` condition picks."""

from __future__ import annotations

from typing import Any

from routines.bindings import RunState
from routines.cursor import Cursor, choose_branch
from routines.model import Routine


def _routine(*steps: dict[str, Any]) -> Routine:
    return Routine.from_data({"id": "t", "steps": list(steps)})


BRANCHED = _routine(
    {"step": "1", "tool": "get_user_profile"},
    {"step": "2", "type": "branch", "description": "Branch on the role"},
    {"step": "2-1_1", "tool": "get_salary", "type": "branchnode", "when": "{{steps.1.role}} == 'hr'"},
    {"step": "2-1_2", "tool": "get_bonus", "type": "branchnode"},
    {"step": "2-2_1", "tool": "refuse", "type": "finish", "when": "{{steps.1.role}} != 'hr'"},
    {"step": "3", "tool": "summarize", "type": "finish"},
)


def _walk(cursor: Cursor, *labels: str) -> None:
    for label in labels:
        cursor.advance(cursor.routine.step(label))


def _next(cursor: Cursor) -> list[str]:
    return [s.step for s in cursor.candidates()]


def test_main_steps_run_in_order_and_the_finish_step_ends_the_run() -> None:
    cursor = Cursor(_routine({"step": "1", "tool": "a"}, {"step": "2", "tool": "b"}, {"step": "3", "tool": "c", "type": "finish"}))
    seen = []
    while not cursor.finished:
        (step,) = cursor.candidates()
        seen.append(step.step)
        cursor.advance(step)
    assert seen == ["1", "2", "3"]
    assert cursor.candidates() == []


def test_a_branch_point_offers_the_first_step_of_every_branch() -> None:
    cursor = Cursor(BRANCHED)
    _walk(cursor, "1")
    assert _next(cursor) == ["2-1_1", "2-2_1"]


def test_a_branch_runs_its_steps_in_order_then_the_next_main_step() -> None:
    cursor = Cursor(BRANCHED)
    _walk(cursor, "1", "2-1_1")
    assert _next(cursor) == ["2-1_2"]
    _walk(cursor, "2-1_2")
    assert _next(cursor) == ["3"]
    _walk(cursor, "3")
    assert cursor.finished


def test_a_finish_step_inside_a_branch_ends_the_run() -> None:
    cursor = Cursor(BRANCHED)
    _walk(cursor, "1", "2-2_1")
    assert cursor.finished and cursor.candidates() == []


def test_a_routine_without_a_finish_step_ends_after_its_last_step() -> None:
    cursor = Cursor(_routine({"step": "1", "tool": "a"}, {"step": "2", "tool": "b"}))
    _walk(cursor, "1")
    assert not cursor.finished
    _walk(cursor, "2")
    assert cursor.finished


def test_a_branch_step_without_branches_is_skipped() -> None:
    cursor = Cursor(_routine({"step": "1", "tool": "a"}, {"step": "2", "type": "branch"}, {"step": "3", "tool": "c"}))
    _walk(cursor, "1")
    assert _next(cursor) == ["3"]


def test_the_last_step_of_a_branch_stands_for_its_main_step() -> None:
    cursor = Cursor(BRANCHED)
    assert cursor.branch_point(BRANCHED.step("2-1_1")) is None
    assert cursor.branch_point(BRANCHED.step("2-1_2")) == "2"
    assert cursor.branch_point(BRANCHED.step("2-2_1")) == "2"
    assert cursor.branch_point(BRANCHED.step("1")) is None


def _branches(*whens: str | None) -> list[Any]:
    steps = [{"step": f"2-{i}_1", "tool": f"t{i}", "type": "branchnode", **({"when": w} if w else {})}
             for i, w in enumerate(whens, start=1)]
    return _routine({"step": "1", "tool": "a"}, {"step": "2", "type": "branch"}, *steps).steps[2:]


def test_the_first_branch_whose_condition_holds_is_chosen() -> None:
    state = RunState(steps={"1": {"role": "hr", "level": 5}})
    options = _branches("{{steps.1.role}} == 'staff'", "{{steps.1.level}} > 3", "{{steps.1.role}} == 'hr'")
    assert choose_branch(options, state).step == "2-2_1"


def test_a_last_branch_without_condition_is_otherwise() -> None:
    state = RunState(steps={"1": {"role": "staff"}})
    assert choose_branch(_branches("{{steps.1.role}} == 'hr'", None), state).step == "2-2_1"
    assert choose_branch(_branches("{{steps.1.role}} == 'staff'", None), state).step == "2-1_1"


def test_no_branch_is_chosen_when_the_conditions_cannot_decide() -> None:
    state = RunState(steps={"1": {"role": "staff"}})
    assert choose_branch(_branches(None, "{{steps.1.role}} == 'hr'"), state) is None  # no condition, not last
    assert choose_branch(_branches("{{steps.1.role}} == 'hr'", "{{steps.1.role}} == 'it'"), state) is None
    assert choose_branch(_branches("{{steps.9.role}} == 'hr'", None), state) is None  # step 9 has not run
    assert choose_branch(_branches("{{steps.1.role}} ==", None), state) is None  # does not parse
