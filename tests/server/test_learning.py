"""Retrieval learning from use: a finished run whose Routine the caller named leaves its question as an example
question of that Routine (``learn_from_runs``), and nothing else does. Bound runs on the in-process HR server."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


def as_data(routine: Any) -> dict[str, Any]:
    return routine.model_dump(exclude_none=True, exclude={"version"})


async def test_a_named_routine_run_teaches_retrieval(make_service, hr_routines, people) -> None:
    service = make_service(learn_from_runs=True, retrieval_threshold=0.0)
    await service.save(as_data(hr_routines["hr.salary"]))
    await service.save(as_data(hr_routines["hr.leave"]))
    inputs = {"employee_name": people.employee_name, "department": people.department}
    question = f"What is {people.employee_name} paid?"
    result, _, found = await service.run(question, routine_id="hr.salary", mode="bound",
                                               user_id=people.hr_user, inputs=inputs)
    assert result.ok and found is None
    assert [(e.routine_id, e.text, e.source) for e in service.store.examples()] == [("hr.salary", question, "runs")]
    # a run that retrieval chose teaches nothing: retrieval would only learn its own guesses
    await service.run(question + " Thanks.", mode="bound", user_id=people.hr_user, inputs=inputs)
    assert len(service.store.examples()) == 1


async def test_learning_is_off_by_default(make_service, hr_routines, people) -> None:
    service = make_service()
    await service.save(as_data(hr_routines["hr.salary"]))
    result, _, _ = await service.run("pay?", routine_id="hr.salary", mode="bound", user_id=people.hr_user,
                                     inputs={"employee_name": people.employee_name, "department": people.department})
    assert result.ok and service.store.examples() == []
