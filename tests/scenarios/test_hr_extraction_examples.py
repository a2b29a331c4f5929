"""The HR scenario's extra extraction examples (scenarios/hr/data/extraction_first_person.jsonl): questions an
employee asks about themselves without writing their name, so the extractor learns to answer ``null`` for the
asker's name (docs/results.md, issue 14: the retrained adapter's last e2e misses). Written for training only,
from the Routines and the HR database; checked here against both."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import date
from pathlib import Path

from routines.inputs import readable_inputs
from routines.scenario import Scenario
from trainer.train import extraction_queries


def test_first_person_examples_write_no_name_and_copy_what_they_state(hr_db: Path) -> None:
    scenario = Scenario.load("hr")
    rows = scenario.extraction_examples()
    routines = scenario.routine_map()
    assert Counter(r["routine_id"] for r in rows) == {rid: 40 for rid in (
        "hr.salary", "hr.employee_profile", "hr.performance_review", "hr.leave", "hr.employment_letter")}
    assert len({r["query"].casefold() for r in rows}) == len(rows)
    con = sqlite3.connect(hr_db)
    departments = {name for (name,) in con.execute("select name from departments")}
    con.close()
    today = date.fromisoformat(scenario.today or "2026-06-30")
    kept = 0
    for row in rows:
        props = routines[row["routine_id"]].inputs["properties"]
        assert set(row["inputs"]) == set(props), row
        assert row["inputs"]["employee_name"] is None, row
        department = row["inputs"].get("department")
        assert department is None or (department in departments and department in row["query"]), row
        names = list(props)
        kept += readable_inputs(routines[row["routine_id"]], row["query"], row["inputs"], names, today) == row["inputs"]
    assert kept >= 0.9 * len(rows)  # what the training target will be: the written values survive


def test_they_are_train_data_after_the_queries_and_their_variants() -> None:
    scenario = Scenario.load("hr")
    extra = scenario.extraction_examples()
    queries = extraction_queries(scenario, "train", 1, seed=0)
    assert queries[-len(extra):] == extra and len({q["id"] for q in queries}) == len(queries)
    assert extraction_queries(scenario, "test", 0, seed=0) == scenario.queries("test")


def test_no_example_nearly_repeats_a_test_query() -> None:
    """Training on a test question flatters the extraction and e2e numbers (difflib ratio >= 0.85, punctuation
    and case ignored)."""
    import difflib
    import re

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z0-9 ]+", "", text.casefold()).split())

    scenario = Scenario.load("hr")
    test = [norm(q["query"]) for q in scenario.queries("test")]
    for example in (norm(r["query"]) for r in scenario.extraction_examples()):
        near = [t for t in test if difflib.SequenceMatcher(None, example, t).ratio() >= 0.85]
        assert not near, (example, near)
