"""Generating the company's people: org units, employees, salary bands, salaries and user accounts.

Pure functions of a seeded ``random.Random`` and the static data in ``data/`` (names, org structure);
no dicts keyed by sets, no wall clock, so the same seed always gives the same rows.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from scenarios.hr.workdays import TODAY

DATA_DIR = Path(__file__).parent / "data"
TARGET_EMPLOYEES = 8240
"""Total headcount the generator aims for (the paper's company has "more than 8,000")."""

# Raw team sizes by job family (scaled so the company reaches TARGET_EMPLOYEES).
TEAM_SIZE = {
    "manufacturing": (130, 230), "logistics": (100, 190), "support": (100, 190), "facilities": (60, 120),
    "software": (100, 200), "sre": (70, 130), "data": (70, 140), "qa": (60, 110), "design": (30, 60),
    "sales": (90, 180), "marketing": (40, 90), "finance": (25, 60), "hr": (14, 34), "legal": (15, 35),
    "it": (60, 120), "security": (30, 60), "communications": (12, 30), "operations": (40, 80), "strategy": (8, 16),
}
IC_LEVELS = (1, 2, 3, 4, 5)
IC_WEIGHTS = (20, 35, 27, 13, 5)
DUPLICATE_NAMES = 90
"""Deliberate duplicate full names: this many people get the name of someone in another department."""


@dataclass
class Unit:
    department_id: str
    name: str
    kind: str  # company, division, department, team
    parent_id: str | None
    family: str
    location: str
    manager_id: str | None = None
    members: list[str] = field(default_factory=list)


@dataclass
class Person:
    employee_id: str
    first_name: str
    last_name: str
    department_id: str
    family: str
    level: int
    title: str
    hire_date: date
    location: str
    employment_type: str
    manager_id: str | None = None
    is_head: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass
class Company:
    units: list[Unit]
    people: list[Person]
    families: dict[str, Any]
    name: str
    domain: str

    def unit(self, department_id: str) -> Unit:
        return self._units[department_id]

    def __post_init__(self) -> None:
        self._units = {u.department_id: u for u in self.units}


def load_static() -> tuple[dict[str, Any], dict[str, list[str]]]:
    org = json.loads((DATA_DIR / "org.json").read_text(encoding="utf-8"))
    names = json.loads((DATA_DIR / "names.json").read_text(encoding="utf-8"))
    return org, {k: list(dict.fromkeys(v)) for k, v in names.items()}


def _units(org: dict[str, Any], rng: random.Random) -> list[Unit]:
    locations = org["locations"]
    units: list[Unit] = []

    def add(name: str, kind: str, parent: str | None, family: str, location: str) -> Unit:
        unit = Unit(f"D{len(units) + 1:03d}", name, kind, parent, family, location)
        units.append(unit)
        return unit

    root = add(org["root"]["name"], "company", None, org["root"]["family"], "London")
    for division in org["divisions"]:
        div = add(division["name"], "division", root.department_id, division["family"], rng.choice(locations))
        for department in division["departments"]:
            dep = add(department["name"], "department", div.department_id, department["family"], rng.choice(locations))
            for team in department["teams"]:
                add(team["name"], "team", dep.department_id, team["family"], rng.choice(locations))
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ValueError("org.json: unit names must be unique")
    return units


def _team_sizes(units: list[Unit], staff: int, rng: random.Random) -> dict[str, int]:
    teams = [u for u in units if u.kind == "team"]
    raw = [rng.randint(*TEAM_SIZE[u.family]) for u in teams]
    budget = TARGET_EMPLOYEES - staff - len(teams)  # every team also has its manager
    scale = budget / sum(raw)
    sizes = [max(8, round(r * scale)) for r in raw]
    sizes[-1] += budget - sum(sizes)
    return {u.department_id: s for u, s in zip(teams, sizes)}


def _hire_date(rng: random.Random, min_years: float = 0.0) -> date:
    years = min(28.0, min_years + rng.expovariate(1 / 5.0))
    return max(date(1998, 3, 2), TODAY - timedelta(days=int(years * 365.25) + 14))


def _name_pool(names: dict[str, list[str]], count: int, rng: random.Random) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    while len(out) < count:
        pair = (rng.choice(names["first_names"]), rng.choice(names["last_names"]))
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def _title(unit: Unit, level: int, families: dict[str, Any]) -> str:
    fam = families[unit.family]
    if level <= 5:
        return fam["titles"][level - 1]
    return {6: fam["manager"], 7: f"Director, {unit.name}", 8: f"Vice President, {unit.name}",
            9: "Chief Executive Officer"}[level]


def build_company(rng: random.Random) -> Company:
    org, names = load_static()
    families = org["families"]
    units = _units(org, rng)
    staff_count = {"company": org["root"]["staff"], "division": 3, "department": 3}
    non_team_staff = sum(staff_count[u.kind] + 1 for u in units if u.kind != "team")
    sizes = _team_sizes(units, non_team_staff, rng)
    total = non_team_staff + sum(sizes.values()) + len(sizes)
    ids = [f"E{n}" for n in range(10001, 10001 + total)]
    rng.shuffle(ids)
    pool = iter(_name_pool(names, total, rng))
    head_level = {"company": 9, "division": 8, "department": 7, "team": 6}
    by_id = {u.department_id: u for u in units}
    people: list[Person] = []
    for unit in units:
        count = sizes.get(unit.department_id, staff_count.get(unit.kind, 0))
        for i in range(count + 1):
            first, last = next(pool)
            head = i == 0
            level = head_level[unit.kind] if head else (
                rng.choices(IC_LEVELS, IC_WEIGHTS)[0] if unit.kind == "team" else rng.choice((3, 4, 5)))
            location = unit.location if rng.random() < 0.85 else rng.choice(org["locations"])
            person = Person(
                employee_id=ids[len(people)], first_name=first, last_name=last, department_id=unit.department_id,
                family=unit.family, level=level, title=_title(unit, level, families),
                hire_date=_hire_date(rng, 2.0 + (level - 5) if head else 0.0), location=location,
                employment_type=rng.choices(("full-time", "part-time", "fixed-term"), (93, 5, 2))[0],
                is_head=head,
            )
            if head:
                unit.manager_id = person.employee_id
                person.employment_type = "full-time"
            people.append(person)
            unit.members.append(person.employee_id)
    for person in people:
        unit = by_id[person.department_id]
        if not person.is_head:
            person.manager_id = unit.manager_id
        elif unit.parent_id is not None:
            person.manager_id = by_id[unit.parent_id].manager_id
    _duplicate_names(people, rng)
    return Company(units, people, families, org["company"], org["email_domain"])


def _duplicate_names(people: list[Person], rng: random.Random) -> None:
    """Give some people the exact full name of someone in another department (real companies have them)."""
    candidates = [p for p in people if not p.is_head]
    chosen = rng.sample(candidates, DUPLICATE_NAMES * 2)
    for a, b in zip(chosen[::2], chosen[1::2]):
        if a.department_id != b.department_id:
            b.first_name, b.last_name = a.first_name, a.last_name


def email_local(person: Person) -> str:
    return re.sub(r"[^a-z.\-]", "", f"{person.first_name}.{person.last_name}".lower().replace(" ", ""))


def employee_rows(company: Company) -> list[tuple]:
    seen: dict[str, int] = {}
    rows = []
    for p in company.people:
        local = email_local(p)
        seen[local] = seen.get(local, 0) + 1
        if seen[local] > 1:
            local = f"{local}{seen[local]}"
        rows.append((
            p.employee_id, p.first_name, p.last_name, p.full_name, f"{local}@{company.domain}", p.department_id,
            p.manager_id, p.title, p.family, p.level, p.hire_date.isoformat(), p.location, p.employment_type, "active",
        ))
    return rows


def band_mid(base: int, level: int) -> int:
    return int(round(base * 1.24 ** (level - 1), -2))


def band_rows(families: dict[str, Any]) -> list[tuple]:
    rows = []
    for family, spec in families.items():
        for level in range(1, 10):
            mid = band_mid(spec["base"], level)
            rows.append((f"{spec['code']}-L{level}", family, level, int(round(mid * 0.8, -2)), mid,
                         int(round(mid * 1.2, -2)), "EUR"))
    return rows


def salary_rows(company: Company, rng: random.Random) -> list[tuple]:
    bonus = {1: 5, 2: 5, 3: 8, 4: 10, 5: 12, 6: 15, 7: 20, 8: 25, 9: 30}
    review = date(2026, 1, 1)
    rows = []
    for p in company.people:
        mid = band_mid(company.families[p.family]["base"], p.level)
        ratio = min(1.18, max(0.82, rng.gauss(0.97, 0.08)))
        if p.hire_date >= review:
            changed, pct = p.hire_date, 0.0
        else:
            changed, pct = review, round(rng.choice((0, 1.5, 2, 2.5, 3, 3, 3.5, 4, 4.5, 5, 6, 8)), 1)
        target = 0 if p.family == "sales" and p.level <= 5 else bonus[p.level]
        rows.append((p.employee_id, int(round(mid * ratio, -2)), "EUR", target, changed.isoformat(), pct, "monthly"))
    return rows


def user_rows(company: Company) -> list[tuple]:
    """One account per employee. People-division staff are ``hr``, its managers ``hr_admin``; other unit
    heads are ``manager``; everyone else ``employee``. User ids are numbered apart from employee ids."""
    people_division = next(u.department_id for u in company.units if u.kind == "division" and u.family == "hr")
    in_people: dict[str, bool] = {}
    for unit in company.units:
        node, inside = unit, False
        while node is not None:
            if node.department_id == people_division:
                inside = True
                break
            node = company.unit(node.parent_id) if node.parent_id else None
        in_people[unit.department_id] = inside
    order = sorted(company.people, key=lambda p: (p.hire_date, p.employee_id))
    rows = []
    for n, p in enumerate(order, start=1):
        hr = in_people[p.department_id]
        role = ("hr_admin" if p.is_head else "hr") if hr else ("manager" if p.is_head else "employee")
        rows.append((f"U{40000 + n:05d}", p.employee_id, email_local(p), role, "active"))
    return rows


def unit_rows(company: Company) -> list[tuple]:
    codes = {u.department_id: f"CC-{1000 + i * 10}" for i, u in enumerate(company.units)}
    return [(u.department_id, u.name, u.kind, u.parent_id, u.manager_id, u.family, u.location, codes[u.department_id])
            for u in company.units]
