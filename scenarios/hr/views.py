"""Shaping database rows into the JSON objects the HR tools return.

Long values (member lists, attendance tables, org charts) are single string fields, one line per item, so
that an engine with variable memory can replace the whole field by a ``memory_*`` key.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import date
from typing import Any

from scenarios.hr.repository import HRData, tenure_years

MAX_LINES = 1000
LATE_AFTER = "09:30"
ATTENDANCE_LEGEND = "P present, R remote, L leave, S sick, A unexcused absence (days); late = check-ins after 09:30"
RATING_LABEL = {1: "Does not meet expectations", 2: "Partially meets expectations", 3: "Meets expectations",
                4: "Exceeds expectations", 5: "Exceptional"}


def person(row: sqlite3.Row, data: HRData) -> dict[str, Any]:
    """The short form of an employee used inside lists."""
    return {"employee_id": row["employee_id"], "name": row["full_name"], "title": row["title"],
            "department": data.units[row["department_id"]]["name"]}


def employee(row: sqlite3.Row, data: HRData) -> dict[str, Any]:
    division = data.division(row["department_id"])
    return {
        "employee_id": row["employee_id"], "name": row["full_name"], "title": row["title"], "level": row["level"],
        "job_family": row["job_family"], "department_id": row["department_id"],
        "department": data.units[row["department_id"]]["name"], "division": division["name"] if division else None,
        "manager_id": row["manager_id"], "manager_name": data.name_of(row["manager_id"]),
        "hire_date": row["hire_date"], "tenure_years": tenure_years(row["hire_date"]), "location": row["location"],
        "email": row["email"], "employment_type": row["employment_type"], "status": row["status"],
    }


def _cap(lines: list[str], what: str) -> str:
    if len(lines) <= MAX_LINES:
        return "\n".join(lines)
    return "\n".join(lines[:MAX_LINES] + [f"... {len(lines) - MAX_LINES} more {what}; ask for a smaller unit"])


def member_lines(members: list[sqlite3.Row], data: HRData) -> str:
    return _cap([f"{m['employee_id']} | {m['full_name']} | {m['title']} | L{m['level']} | "
                 f"{data.units[m['department_id']]['name']} | {m['location']} | since {m['hire_date']}"
                 for m in members], "members")


def attendance_counts(rows: list[sqlite3.Row]) -> Counter:
    counts: Counter = Counter({"present": 0, "remote": 0, "leave": 0, "sick": 0, "absent": 0, "late": 0})
    for r in rows:
        counts[r["status"]] += 1
        if r["check_in"] and r["check_in"] > LATE_AFTER:
            counts["late"] += 1
    return counts


def attendance_rate(counts: Counter) -> float:
    days = sum(counts[k] for k in ("present", "remote", "leave", "sick", "absent"))
    return round(100.0 * (counts["present"] + counts["remote"]) / max(1, days), 1)


def day_lines(rows: list[sqlite3.Row]) -> str:
    out = []
    for r in rows:
        day = date.fromisoformat(r["day"])
        times = f" {r['check_in']}-{r['check_out']}" if r["check_in"] else ""
        late = " late" if r["check_in"] and r["check_in"] > LATE_AFTER else ""
        out.append(f"{r['day']} {day.strftime('%a')} {r['status']}{times}{late}")
    return "\n".join(out)


def department_table(members: list[sqlite3.Row], rows: list[sqlite3.Row]) -> tuple[str, Counter]:
    by_emp: dict[str, list[sqlite3.Row]] = {}
    for r in rows:
        by_emp.setdefault(r["employee_id"], []).append(r)
    totals: Counter = Counter()
    lines = [ATTENDANCE_LEGEND]
    for m in members:
        c = attendance_counts(by_emp.get(m["employee_id"], []))
        totals.update(c)
        lines.append(f"{m['employee_id']} {m['full_name']} | P{c['present']} R{c['remote']} L{c['leave']} "
                     f"S{c['sick']} A{c['absent']} | late {c['late']}")
    for key in ("present", "remote", "leave", "sick", "absent", "late"):
        totals.setdefault(key, 0)
    return _cap(lines, "people"), totals


def org_chart(data: HRData, department_id: str) -> str:
    def head(unit: sqlite3.Row) -> str:
        manager = data.employee_row(unit["manager_id"]) if unit["manager_id"] else None
        who = f"{manager['full_name']} ({manager['title']})" if manager else "no manager"
        return f"{unit['name']} [{unit['department_id']}, {unit['kind']}] - {who}"

    path = data.path(department_id)
    lines = ["  " * i + head(u) for i, u in enumerate(path[:-1])]
    depth = len(path) - 1

    def walk(unit_id: str, level: int) -> None:
        unit = data.units[unit_id]
        count = len(data.members(unit_id))
        lines.append("  " * level + f"{head(unit)}, {count} people")
        for child in data.children.get(unit_id, []):
            walk(child, level + 1)

    walk(department_id, depth)
    if not data.children.get(department_id):
        members = data.members(department_id)
        roles = Counter(m["title"] for m in members if m["employee_id"] != path[-1]["manager_id"])
        lines += ["  " * (depth + 1) + f"{title}: {n}" for title, n in roles.most_common()]
    return "\n".join(lines)
