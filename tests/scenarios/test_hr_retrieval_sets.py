"""The held-out retrieval set and the negative questions (scenarios/hr/data): the shape the benchmark and
docs/procedure-memory.md rely on, and real people and departments of the default company (seed 7)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "scenarios" / "hr" / "data"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_heldout_set_shape() -> None:
    held = rows("heldout_retrieval.jsonl")
    routines = {p.stem for p in (DATA.parent / "routines").glob("*.json")}
    in_scope = Counter(r["routine_id"] for r in held if r["kind"] == "in_scope")
    assert set(in_scope) == routines and min(in_scope.values()) == 20 and sum(in_scope.values()) >= 140
    kinds = Counter(r["kind"] for r in held if r["routine_id"] is None)
    assert kinds["unrelated"] >= 20 and kinds["uncovered"] >= 20
    assert len({r["query"] for r in held}) == len(held)


def test_negatives_share_no_question_with_the_heldout_set_or_the_train_queries() -> None:
    negatives = {r["question"] for r in rows("negatives_train.jsonl")}
    assert len(negatives) >= 100
    assert not negatives & {r["query"] for r in rows("heldout_retrieval.jsonl")}
    assert not negatives & {r["query"] for r in rows("queries_train.jsonl")}


def test_heldout_names_are_real_people_and_departments(hr_db: Path) -> None:
    con = sqlite3.connect(hr_db)
    people = {name.lower(): dept for name, dept in con.execute(
        "select e.full_name, d.name from employees e join departments d using (department_id)")}
    departments = {name.lower() for (name,) in con.execute("select name from departments")}
    con.close()
    for row in rows("heldout_retrieval.jsonl"):
        if row["kind"] != "in_scope":
            continue
        text = row["query"].lower()
        named = [d for d in departments if re.search(rf"\b{re.escape(d)}\b", text)]
        if row["routine_id"] in ("hr.attendance_report", "hr.department_overview"):
            assert named, row["query"]  # a department question names a real department
            continue
        persons = [p for p in people if re.search(rf"\b{re.escape(p)}\b", text)]
        first_person = re.search(r"\b(i|my|me)\b", text)
        assert persons or first_person, row["query"]
        for person in persons:  # a department given with a person is theirs
            assert not named or people[person].lower() in named, row["query"]
