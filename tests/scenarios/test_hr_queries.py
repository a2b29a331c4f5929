"""Query sets and gold trajectories: sizes, the train/test entity split, determinism and replay."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import fastmcp
import pytest

from routines.flatten import flatten
from scenarios.hr import create_server, load_gold, load_queries, load_routines
from scenarios.hr.db import connect
from scenarios.hr.queries import TEMPLATES_FILE, generate_queries, split_units
from scenarios.hr.repository import HRData
from tests.scenarios.hr_reference import run_reference

REPLAY_PER_SPLIT = 30
DATA_TOOLS = {"hr.salary": "get_salary", "hr.leave": "get_leave_balance",
              "hr.attendance_report": "get_department_attendance"}


def test_query_set_sizes_match_the_paper() -> None:
    train, test = load_queries("train"), load_queries("test")
    assert len(train) == 537 and len(test) == 200
    variants = {v.id for r in load_routines() for v in flatten(r)}
    assert set(Counter(q["variant"] for q in test).values()) == {20}
    assert set(Counter(q["variant"] for q in train)) == variants
    steps = sum(len(g["calls"]) for g in load_gold("test"))
    assert 1100 <= steps <= 1200  # the paper: 1,148


def test_five_or_six_templates_per_variant_with_several_phrasings() -> None:
    templates = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    assert len(templates) == 10
    for variant, items in templates.items():
        assert 5 <= len(items) <= 6, variant
        assert all(len(t["phrasings"]) >= 2 for t in items), variant
    used = Counter((q["variant"], q["template"]) for q in load_queries("test"))
    assert len(used) == sum(len(v) for v in templates.values())


def test_inputs_fit_each_routines_input_schema() -> None:
    routines = {r.id: r for r in load_routines()}
    for q in load_queries("train") + load_queries("test"):
        schema = routines[q["routine_id"]].inputs or {}
        assert set(q["inputs"]) == set(schema["properties"]), q["id"]
        for key, spec in schema["properties"].items():
            assert "enum" not in spec or q["inputs"][key] in spec["enum"], q["id"]
        assert q["user_id"].startswith("U") and q["query"].strip()


def _entities(hr_db: Path, queries: list[dict[str, Any]]) -> tuple[set[str], set[str], set[str]]:
    """Employees (subjects and users asking), departments and full names that a split's queries involve."""
    data = HRData(hr_db)
    users = {r["user_id"]: r["employee_id"] for r in data.rows("SELECT user_id, employee_id FROM users")}
    people, units, names = set(), set(), set()
    for q in queries:
        asker = data.employee_row(users[q["user_id"]])
        people.add(asker["employee_id"])
        units.add(asker["department_id"])
        if "employee_name" in q["inputs"]:
            found = data.search_employees(q["inputs"]["employee_name"], q["inputs"]["department"])
            assert len(found) == 1, q["id"]
            people.add(found[0]["employee_id"])
            names.add(found[0]["full_name"])
            units.add(found[0]["department_id"])
        if "department_name" in q["inputs"]:
            units.add(data.find_units(q["inputs"]["department_name"])[0]["department_id"])
    return people, units, names


def test_train_and_test_share_no_person_department_or_name(hr_db: Path) -> None:
    train_people, train_units, train_names = _entities(hr_db, load_queries("train"))
    test_people, test_units, test_names = _entities(hr_db, load_queries("test"))
    assert not train_people & test_people
    assert not train_units & test_units
    assert not train_names & test_names
    split = split_units(HRData(hr_db))
    assert train_units <= set(split["train"]) and test_units <= set(split["test"])


def test_query_generation_is_deterministic(hr_db: Path) -> None:
    fresh = generate_queries(hr_db, seed=7)
    assert fresh["test"] == load_queries("test")
    assert fresh["train"] == load_queries("train")


def test_gold_trajectories_reach_the_finish_step_on_their_variant() -> None:
    routines = {r.id: r for r in load_routines()}
    for g in load_gold("train") + load_gold("test"):
        routine = routines[g["routine_id"]]
        labels = [c["step"] for c in g["calls"]]
        assert routine.step(labels[-1]).type == "finish" and g["calls"][-1]["name"] == "summarize", g["id"]
        assert g["answer"] and g["answer"] == g["calls"][-1]["result"]["answer"]
        variant = next(v for v in flatten(routine) if v.id == g["variant"])
        assert [c["name"] for c in g["calls"]] == [s.tool for s in variant.steps if s.tool], g["id"]


def test_denied_branches_avoid_real_permission_errors() -> None:
    """In the 'denied' variants the permission check said no, and the data tool would indeed refuse."""
    for g in load_gold("test") + load_gold("train"):
        checks = [c["result"] for c in g["calls"] if c["name"] in ("check_permission", "check_department_access")]
        if checks:
            assert checks[0]["allowed"] is g["variant"].endswith("-1"), g["id"]


@pytest.mark.anyio
async def test_denied_users_really_get_permission_errors(hr_db: Path) -> None:
    denied = [g for g in load_gold("test") if g["variant"].endswith(("/4-2", "/3-2"))]
    async with fastmcp.Client(create_server(hr_db)) as client:
        for g in random.Random(3).sample(denied, 15):
            tool = DATA_TOOLS[g["routine_id"]]
            target = next(c["result"] for c in g["calls"] if c["name"] in ("search_employee", "search_department"))
            args = {"user_id": g["user_id"]}
            if tool == "get_department_attendance":
                args |= {"department_id": target["department_id"], "month": g["inputs"]["month"]}
            else:
                args |= {"employee_id": target["employee_id"]}
            result = await client.call_tool(tool, args, raise_on_error=False)
            assert result.is_error and result.content[0].text.startswith("permission denied:"), g["id"]


@pytest.mark.anyio
async def test_an_independent_runner_reproduces_the_engines_gold(hr_db: Path) -> None:
    routines = {r.id: r for r in load_routines()}
    async with fastmcp.Client(create_server(hr_db)) as client:
        for split in ("train", "test"):
            gold = load_gold(split)
            for g in random.Random(split).sample(gold, REPLAY_PER_SPLIT):
                run = await run_reference(client, routines[g["routine_id"]], g["inputs"], g["user_id"])
                assert run.variant == g["variant"]
                assert run.calls == g["calls"], g["id"]
                assert run.answer == g["answer"]


def test_documented_example_query_is_the_first_test_query() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "hr-scenario.md").read_text(encoding="utf-8")
    first = load_queries("test")[0]
    assert first["query"] in doc and first["user_id"] in doc and first["phrasing"] in doc


def test_users_asking_come_from_the_database(hr_db: Path) -> None:
    users = {r[0] for r in connect(hr_db).execute("SELECT user_id FROM users")}
    assert {q["user_id"] for q in load_queries("train") + load_queries("test")} <= users
