"""Query sets: templates filled with people, departments and dates from the database, split by department.

Departments (with their teams) are split between train and test, one department per division going to
test; every person and department a query names, and the user asking, come from its own split, so the two
sets share no entity. Each template of a flattened Routine names the kind of user asking, chosen so that the
intended branch is the one taken (checked with the server's own permission rules here, and again by running
the reference trajectory).

Regenerate queries and gold trajectories with ``python -m scenarios.hr.queries --write``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from scenarios.hr.permissions import decide, department_access
from scenarios.hr.repository import HRData
from scenarios.hr.workdays import ATTENDANCE_MONTHS, MONTH_NAMES, add_working_days, working_days

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
TEMPLATES_FILE = DATA_DIR / "query_templates.json"
TEST_PER_VARIANT = 20
TRAIN_TOTAL = 537
SPLITS = ("train", "test")
# Which permission decides each branching variant, and the answer it must give.
EXPECT: dict[str, tuple[str, bool]] = {
    "hr.salary/4-1": ("view_salary", True), "hr.salary/4-2": ("view_salary", False),
    "hr.leave/3-1": ("view_leave", True), "hr.leave/3-2": ("view_leave", False),
    "hr.attendance_report/3-1": ("department", True), "hr.attendance_report/3-2": ("department", False),
    "hr.performance_review": ("view_review", True), "hr.employment_letter": ("issue_letter", True),
}


@dataclass
class Pool:
    """Everything one split may name."""

    split: str
    units: list[str]
    people: list[sqlite3.Row]
    users: dict[str, sqlite3.Row]  # employee id -> user row
    used: set[str] = field(default_factory=set)


def split_units(data: HRData, seed: int = 7) -> dict[str, list[str]]:
    """Department ids (departments and their teams) per split; one department of each division is test."""
    rng = random.Random(f"hr-split-{seed}")
    out: dict[str, list[str]] = {"train": [], "test": []}
    divisions = [u for u in data.units.values() if u["kind"] == "division"]
    for division in divisions:
        departments = sorted(data.children.get(division["department_id"], []))
        test = rng.choice(departments)
        for dep in departments:
            out["test" if dep == test else "train"].extend(data.subtree_ids(dep))
    return out


def _pools(data: HRData, seed: int) -> dict[str, Pool]:
    users = {r["employee_id"]: r for r in data.rows("SELECT * FROM users ORDER BY user_id")}
    people = data.rows("SELECT * FROM employees ORDER BY employee_id")
    pools = {}
    for split, units in split_units(data, seed).items():
        inside = set(units)
        pools[split] = Pool(split, units, [p for p in people if p["department_id"] in inside], users)
    return pools


class Filler:
    """Fills one variant's templates for one split."""

    def __init__(self, data: HRData, pool: Pool, clean_names: set[str], rng: random.Random) -> None:
        self.data, self.pool, self.clean, self.rng = data, pool, clean_names, rng
        self.heads = {u["manager_id"] for u in data.units.values()}
        self.by_unit: dict[str, list[sqlite3.Row]] = {}
        for p in pool.people:
            self.by_unit.setdefault(p["department_id"], []).append(p)
        self.by_id = {p["employee_id"]: p for p in pool.people}
        self.role_of = {p["employee_id"]: pool.users[p["employee_id"]]["role"] for p in pool.people}
        self.by_role: dict[str, list[sqlite3.Row]] = {}
        for p in pool.people:
            self.by_role.setdefault(self.role_of[p["employee_id"]], []).append(p)
        self.name_count = Counter(r["full_name"] for r in data.rows("SELECT full_name FROM employees"))
        self._subjects: dict[str, list[sqlite3.Row]] = {}

    def role(self, person: sqlite3.Row) -> str:
        return self.role_of[person["employee_id"]]

    def user_id(self, person: sqlite3.Row) -> str:
        return self.pool.users[person["employee_id"]]["user_id"]

    def in_split(self, employee_id: str) -> sqlite3.Row | None:
        return self.by_id.get(employee_id)

    # ---- subjects -------------------------------------------------------------------------------------
    def subjects(self, kind: str) -> Iterator[sqlite3.Row]:
        """Candidate subjects of ``kind`` in a fixed shuffled order, those already used in this split left out."""
        if kind not in self._subjects:
            self._subjects[kind] = self._subject_order(kind)
        return (p for p in self._subjects[kind] if p["employee_id"] not in self.pool.used)

    def _subject_order(self, kind: str) -> list[sqlite3.Row]:
        people = [p for p in self.pool.people if p["full_name"] in self.clean]
        if kind == "team_manager":
            team_heads = {self.data.units[u]["manager_id"] for u in self.pool.units if self.data.units[u]["kind"] == "team"}
            people = [p for p in people if p["employee_id"] in team_heads]
        elif kind == "hr_employee":
            people = [p for p in people if self.role(p) == "hr"]
        else:
            people = [p for p in people if p["employee_id"] not in self.heads]
        self.rng.shuffle(people)
        dupes = [p for p in people if self.name_count[p["full_name"]] > 1][:2]
        return dupes + [p for p in people if p not in dupes]  # deliberate duplicate names early in every variant

    def units(self) -> list[str]:
        weighted = [u for u in self.pool.units for _ in range(3 if self.data.units[u]["kind"] == "team" else 1)]
        self.rng.shuffle(weighted)
        return weighted

    def mention(self, person: sqlite3.Row) -> str | None:
        """The department or team name a query gives for ``person``: one that finds exactly them."""
        unit = self.data.units[person["department_id"]]
        options = [unit["name"]]
        if unit["kind"] == "team" and self.rng.random() < 0.25:
            options.insert(0, self.data.units[unit["parent_id"]]["name"])
        for name in options:
            found = self.data.search_employees(person["full_name"], name)
            if [r["employee_id"] for r in found] == [person["employee_id"]]:
                return name
        return None

    # ---- requesters -----------------------------------------------------------------------------------
    def requesters(self, kind: str, subject: sqlite3.Row | None, unit: str | None) -> list[sqlite3.Row]:
        people = self.pool.people
        if kind in ("self", "self_hr"):
            return [subject] if subject is not None else []
        if kind in ("hr", "hr_admin"):
            return [p for p in self.by_role.get(kind, []) if p is not subject]
        if kind == "any":
            return [p for p in people if p is not subject]
        if subject is not None:
            chain = [r["employee_id"] for r in self.data.manager_chain(subject["employee_id"])]
            if kind == "manager":
                found = self.in_split(chain[0]) if chain else None
                return [found] if found is not None else []
            if kind == "line_manager":
                return [p for c in chain if (p := self.in_split(c)) is not None and self.role(p) == "manager"]
            if kind == "peer":
                return [p for p in self.by_unit.get(subject["department_id"], [])
                        if p is not subject and self.role(p) == "employee"]
            if kind == "other_manager":
                return [p for p in self.by_role.get("manager", []) if p["employee_id"] not in chain]
            if kind == "report":
                return [p for p in people if p["manager_id"] == subject["employee_id"] and self.role(p) == "employee"]
        if unit is not None:
            subtree = self.data.subtree_ids(unit)
            heads = [self.data.units[u]["manager_id"] for u in (unit, self.data.units[unit]["parent_id"])]
            if kind == "own_unit_manager":
                return [p for p in people if p["employee_id"] == heads[0]]
            if kind == "unit_manager":
                return [p for p in people if p["employee_id"] in heads]
            if kind == "unit_member":
                return [p for u in subtree for p in self.by_unit.get(u, []) if self.role(p) == "employee"]
            if kind == "unit_outsider_manager":
                return [p for p in self.by_role.get("manager", []) if p["department_id"] not in subtree]
            if kind == "unit_outsider_employee":
                return [p for p in self.by_role.get("employee", []) if p["department_id"] not in subtree]
        raise ValueError(f"unknown requester kind {kind!r} for this subject")

    def allowed(self, variant: str, user: sqlite3.Row, subject: sqlite3.Row | None, unit: str | None,
                letter_type: str | None) -> bool:
        action, expected = EXPECT.get(variant, ("", True))
        if not action:
            return True
        uid = self.user_id(user)
        if action == "department":
            return department_access(self.data, uid, unit or "").allowed == expected
        ok = decide(self.data, uid, action, subject["employee_id"]).allowed == expected  # type: ignore[index]
        if ok and letter_type == "salary_certificate":
            ok = decide(self.data, uid, "view_salary", subject["employee_id"]).allowed  # type: ignore[index]
        return ok

    # ---- dates --------------------------------------------------------------------------------------------
    @staticmethod
    def day_text(day: date, style: int) -> str:
        month = MONTH_NAMES[day.month - 1]
        return [f"{month} {day.day}", f"{day.day} {month}", day.isoformat()][style]

    def period(self, leave_type: str, single: bool) -> tuple[date, date]:
        days = working_days(date(2026, 7, 1), date(2026, 9, 18))
        start = self.rng.choice(days)
        length = 1 if single else self.rng.randint(1, 2) if leave_type == "personal" else self.rng.randint(2, 10)
        return start, add_working_days(start, length)

    # ---- one query ----------------------------------------------------------------------------------------
    def fill(self, routine_id: str, variant: str, template: dict[str, Any], phrasing: str) -> dict[str, Any]:
        subject_kind = template["subject"]
        letter_type = template.get("letter_type")
        candidates: Iterable[Any] = self.units() if subject_kind == "unit" else self.subjects(subject_kind)
        for candidate in candidates:
            subject = None if subject_kind == "unit" else candidate
            unit = candidate if subject_kind == "unit" else None
            fields: dict[str, Any] = {}
            if subject is not None:
                dept = self.mention(subject)
                if dept is None:
                    continue
                fields = {"name": subject["full_name"], "dept": dept, "title": subject["title"]}
            users = self.requesters(template["requester"], subject, unit)
            self.rng.shuffle(users)
            user = next((u for u in users if self.allowed(variant, u, subject, unit, letter_type)), None)
            if user is None:
                continue
            inputs: dict[str, Any]
            if subject is not None:
                inputs = {"employee_name": subject["full_name"], "department": fields["dept"]}
                self.pool.used.add(subject["employee_id"])
            else:
                month = self.rng.choice(ATTENDANCE_MONTHS)
                name = self.data.units[unit]["name"]  # type: ignore[index]
                label = MONTH_NAMES[int(month[5:]) - 1]
                fields = {"unit": name, "month": self.rng.choice((label, f"{label} 2026"))}
                inputs = {"department_name": name}
                if routine_id == "hr.attendance_report":
                    inputs["month"] = month
            if "leave_type" in template:
                start, end = self.period(template["leave_type"], single="{end}" not in phrasing)
                style = self.rng.randrange(3)
                fields |= {"start": self.day_text(start, style), "end": self.day_text(end, style)}
                inputs |= {"leave_type": template["leave_type"], "start_date": start.isoformat(),
                           "end_date": end.isoformat()}
            if letter_type:
                inputs["letter_type"] = letter_type
            return {"query": phrasing.format(**fields), "routine_id": routine_id, "variant": variant,
                    "template": template["key"], "phrasing": phrasing, "user_id": self.user_id(user),
                    "inputs": inputs}
        raise RuntimeError(f"no entity in the {self.pool.split} split fits template {template['key']!r}")


def variant_counts() -> dict[str, dict[str, int]]:
    """Queries per variant and split: 20 test each; 537 train spread as evenly as possible."""
    variants = sorted(json.loads(TEMPLATES_FILE.read_text(encoding="utf-8")))
    base, extra = divmod(TRAIN_TOTAL, len(variants))
    return {v: {"train": base + (i < extra), "test": TEST_PER_VARIANT} for i, v in enumerate(variants)}


def generate_queries(db_path: str | Path, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """Query records for both splits (deterministic for a database built with the same seed)."""
    templates = json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))
    data = HRData(db_path)
    try:
        pools = _pools(data, seed)
        holders: dict[str, set[str]] = {}
        split_of = {u: s for s, pool in pools.items() for u in pool.units}
        for row in data.rows("SELECT full_name, department_id FROM employees"):
            holders.setdefault(row["full_name"], set()).add(split_of.get(row["department_id"], "none"))
        out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for variant, counts in variant_counts().items():
            routine_id = variant.split("/")[0]
            for split in SPLITS:
                clean = {name for name, splits in holders.items() if splits == {split}}
                filler = Filler(data, pools[split], clean, random.Random(f"{seed}-{split}-{variant}"))
                for i in range(counts[split]):
                    template = templates[variant][i % len(templates[variant])]
                    phrasings = template["phrasings"]
                    phrasing = phrasings[(i // len(templates[variant])) % len(phrasings)]
                    out[split].append(filler.fill(routine_id, variant, template, phrasing))
        for split, records in out.items():
            for n, record in enumerate(records, start=1):
                out[split][n - 1] = {"id": f"hr-{split}-{n:04d}", "split": split, **record}
        return out
    finally:
        data.close()


def main(argv: list[str] | None = None) -> int:
    from scenarios.hr.gold import write_all

    parser = argparse.ArgumentParser(prog="python -m scenarios.hr.queries",
                                     description="Regenerate the HR query sets and their gold trajectories.")
    parser.add_argument("--write", action="store_true", help="write queries_*.jsonl and gold_*.jsonl(.gz)")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder (default: the package data)")
    parser.add_argument("--seed", type=int, default=7, help="database and query seed (default 7)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.write:
        parser.print_help()
        return 2
    summary = write_all(args.out, seed=args.seed)
    logger.info("wrote %s", json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
