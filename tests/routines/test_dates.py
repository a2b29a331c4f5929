"""Dates a question writes, read as ISO values for input extraction."""

from __future__ import annotations

from datetime import date

import pytest

from routines.dates import question_dates
from routines.inputs import extraction_schema, readable_inputs, spans
from routines.model import Routine

TODAY = date(2026, 6, 30)


@pytest.mark.parametrize(("text", "days", "months"), [
    ("from 25 August to 28 August", ["2026-08-25", "2026-08-28"], ["2026-08"]),
    ("off from August 27 until September 1.", ["2026-08-27", "2026-09-01"], ["2026-08", "2026-09"]),
    ("leave from September 1 to September 1?", ["2026-09-01"], ["2026-09"]),
    ("2026-07-27 to 2026-08-04", ["2026-07-27", "2026-08-04"], ["2026-07", "2026-08"]),
    ("the 1st of May, 2027 and Sept. 3rd", ["2027-05-01", "2026-09-03"], ["2027-05", "2026-09"]),
    ("attendance of Sales for June", [], ["2026-06"]),
    ("the May 2026 attendance summary", [], ["2026-05"]),
    ("May I take 3 days? They may.", [], []),  # the verb
    ("Rooms 31 June and 2026-13-01", [], []),  # not dates
])
def test_question_dates(text: str, days: list[str], months: list[str]) -> None:
    assert question_dates(text, TODAY) == (days, months)


def test_without_a_reference_the_year_is_the_clocks() -> None:
    assert question_dates("on 3 March")[0] == [f"{date.today().year}-03-03"]


LEAVE = Routine.from_data({
    "name": "Leave", "description": "Check a leave request.",
    "inputs": {"type": "object", "properties": {
        "employee_name": {"type": "string"},
        "start_date": {"type": "string", "description": "First day, YYYY-MM-DD"},
        "month": {"type": "string", "description": "Month as YYYY-MM"}}},
    "steps": [{"step": "1", "name": "Check", "description": "Check", "tool": "check", "type": "finish",
               "args": {"name": "{{inputs.employee_name}}", "start": "{{inputs.start_date}}", "month": "{{inputs.month}}"}}],
})


def test_a_date_input_can_only_be_a_date_the_question_writes() -> None:
    schema = extraction_schema(LEAVE, ["employee_name", "start_date", "month"],
                               "Can Marie Luo's holiday start on 13 July?", TODAY)
    props = {name: prop["anyOf"][0] for name, prop in schema["properties"].items()}  # [1]: null, "not said"
    assert props["start_date"]["enum"] == ["2026-07-13"]
    assert props["month"]["enum"] == ["2026-07"]
    assert "Marie Luo" in props["employee_name"]["enum"] and "Marie Luo's" not in props["employee_name"]["enum"]
    bare = extraction_schema(LEAVE, ["start_date"], "Can she start soon?", TODAY)["properties"]["start_date"]["anyOf"][0]
    assert "enum" not in bare and bare["pattern"].startswith("^[0-9]{4}-(0[1-9]|1[0-2])-")


def test_possessives_give_the_name_they_belong_to() -> None:
    assert "Channel Partners" in spans("I need Channel Partners's attendance")
    assert "Marie Luo" in spans("Marie Luo’s leave")


def test_the_trainer_teaches_null_for_a_value_the_question_does_not_write() -> None:
    inputs = {"employee_name": "Olivia Bonnet", "start_date": "2026-07-13", "month": "2026-07"}
    names = list(inputs)
    assert readable_inputs(LEAVE, "Can olivia bonnet start on 13 July?", inputs, names, TODAY) == {
        "employee_name": "olivia bonnet", "start_date": "2026-07-13", "month": "2026-07"}  # as the question writes it
    assert readable_inputs(LEAVE, "Can I start my leave on 13 July?", inputs, names, TODAY)["employee_name"] is None
    assert readable_inputs(LEAVE, "Can Olivia Bonnet start soon?", inputs, names, TODAY)["start_date"] is None
