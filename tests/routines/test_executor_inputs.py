"""The executor reads a Routine's inputs from the question (hybrid and model mode): under their schema, null for a
value the question does not say, and the caller is asked when the reading fails where nothing can go on."""

from __future__ import annotations

import pytest

from routines.errors import CallerError
from routines.hub import ToolHub
from tests.fixtures.executing import ADA_HR, SALARY, Calls, executor_for

pytestmark = pytest.mark.anyio



async def test_inputs_missing_in_hybrid_mode_are_extracted_by_the_model_under_their_schema(hub: ToolHub) -> None:
    executor = executor_for(hub, ['{"employee_name": "Alan"}'])
    result = await executor.run(SALARY, "How much does Alan make?", user_id="u-staff", mode="hybrid")
    assert result.ok, result.error
    assert result.inputs == {"employee_name": "Alan"}
    constraint = executor.backend.constraints[0]  # type: ignore[union-attr]
    assert constraint is not None and constraint.json_schema is not None
    assert constraint.json_schema["required"] == ["employee_name"]
    prop, unsaid = constraint.json_schema["properties"]["employee_name"]["anyOf"]
    assert "Alan" in prop.get("enum", ["Alan"]) and ("enum" in prop or prop.get("maxLength", 0) > 0)  # bounded
    assert unsaid == {"type": "null"}


async def test_an_input_the_question_does_not_say_is_left_to_the_model(hub: ToolHub, calls: Calls) -> None:
    """"What do I earn?": no name to read, so the reading says null and the step that needs it is the model's."""
    executor = executor_for(hub, ['{"employee_name": null}', {"name": "search_employee", "arguments": {"name": "Ada"}}])
    result = await executor.run(SALARY, "What do I earn?", user_id="u-hr", mode="hybrid")
    assert result.ok, result.error
    assert result.inputs == {}
    assert [c.source for c in result.calls][:3] == ["bound", "model", "bound"]
    assert ("search_employee", {"name": "Ada"}) in calls


async def test_an_extraction_that_does_not_fit_the_schema_asks_the_caller_for_the_inputs(hub: ToolHub) -> None:
    executor = executor_for(hub, ["I think it is Alan."])
    with pytest.raises(CallerError, match="could not read employee_name from the question.*pass them as inputs"):
        await executor.run(SALARY, "How much does Alan make?", user_id="u-staff", mode="hybrid")


async def test_model_mode_reads_the_inputs_first_and_the_routine_binds_them(hub: ToolHub, calls: Calls) -> None:
    """The model misspells the name at step 2; the input it read from the question is what the tool gets."""
    misspelt = [ADA_HR[0], {"name": "search_employee", "arguments": {"name": "Adda"}}, *ADA_HR[2:]]
    executor = executor_for(hub, ['{"employee_name": "Ada"}', *misspelt], extract_inputs=True)
    result = await executor.run(SALARY, "What does Ada earn?", user_id="u-hr")
    assert result.ok, result.error
    assert result.inputs == {"employee_name": "Ada"}
    assert executor.backend.constraints[0].json_schema is not None  # type: ignore[union-attr]
    assert ("search_employee", {"name": "Ada"}) in calls
    search = next(a for a in result.attempts if a.tool == "search_employee")
    assert search.extra["model_arguments"] == {"name": "Adda"}


async def test_model_mode_goes_on_when_the_inputs_cannot_be_read(hub: ToolHub, calls: Calls) -> None:
    executor = executor_for(hub, ["I cannot tell.", *ADA_HR], extract_inputs=True)
    result = await executor.run(SALARY, "What does Ada earn?", user_id="u-hr")
    assert result.ok, result.error
    assert result.inputs == {}
    assert ("search_employee", {"name": "Ada"}) in calls  # the model's own value


async def test_bound_mode_without_the_inputs_asks_for_them(hub: ToolHub) -> None:
    with pytest.raises(CallerError, match="bound mode needs the Routine's inputs: employee_name; pass them as inputs"):
        await executor_for(hub).run(SALARY, "Ada?", user_id="u-hr", mode="bound")
