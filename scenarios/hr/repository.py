"""Read access to the company database for the HR tools: lookups, searches and aggregates.

Lookups of unknown ids raise :class:`NotFound`, a ``ToolError`` whose message says what was not found and how
to find the right id, so a model calling a tool with a wrong argument gets an answer it can act on.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from fastmcp.exceptions import ToolError

from scenarios.hr.db import connect
from scenarios.hr.workdays import TODAY

_WS = re.compile(r"\s+")


class NotFound(ToolError):
    """An id or name that the database does not have."""


def norm(text: str) -> str:
    return _WS.sub(" ", text or "").strip().casefold()


def tenure_years(hire_date: str) -> float:
    return round((TODAY - date.fromisoformat(hire_date)).days / 365.25, 1)


class HRData:
    """One read-only connection plus the org units in memory (there are fewer than a hundred)."""

    def __init__(self, path: str | Path) -> None:
        self.db_path = Path(path)
        self.con: sqlite3.Connection = connect(path)
        self.units: dict[str, sqlite3.Row] = {
            r["department_id"]: r for r in self.con.execute("SELECT * FROM departments ORDER BY department_id")}
        self.children: dict[str, list[str]] = {}
        for unit_id, unit in self.units.items():
            if unit["parent_id"]:
                self.children.setdefault(unit["parent_id"], []).append(unit_id)

    def close(self) -> None:
        self.con.close()

    def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self.con.execute(sql, params).fetchall()

    # ---- people ---------------------------------------------------------------------------------
    def user(self, user_id: str) -> sqlite3.Row:
        row = self.con.execute("SELECT * FROM users WHERE user_id = ?", (user_id.strip(),)).fetchone()
        if row is None:
            raise NotFound(f"not found: no user account {user_id!r}; user ids look like U40001 (the current user's "
                           "id is given in the system prompt)")
        return row

    def employee_row(self, employee_id: str) -> sqlite3.Row:
        row = self.con.execute("SELECT * FROM employees WHERE employee_id = ?", (employee_id.strip(),)).fetchone()
        if row is None:
            hint = " (that is a user id; employee ids look like E10234)" if employee_id.strip().startswith("U") else ""
            raise NotFound(f"not found: no employee {employee_id!r}{hint}; find the id with search_employee")
        return row

    def manager_chain(self, employee_id: str) -> list[sqlite3.Row]:
        """The employee's managers, nearest first, up to the chief executive."""
        chain: list[sqlite3.Row] = []
        row = self.employee_row(employee_id)
        while row["manager_id"]:
            row = self.employee_row(row["manager_id"])
            chain.append(row)
        return chain

    def search_employees(self, name: str, department: str = "") -> list[sqlite3.Row]:
        """Exact full-name matches first, else every employee whose name contains all the words given."""
        words = norm(name).split()
        if not words:
            raise ToolError("name is empty; give a first and last name, e.g. 'Maria Garcia'")
        scope: list[str] | None = None
        if norm(department):
            scope = [uid for unit in self.find_units(department) for uid in self.subtree_ids(unit["department_id"])]
        clause = " AND ".join("lower(full_name) LIKE ?" for _ in words)
        rows = self.rows(f"SELECT * FROM employees WHERE {clause} ORDER BY full_name, employee_id",
                         *[f"%{w}%" for w in words])
        if scope is not None:
            rows = [r for r in rows if r["department_id"] in scope]
        exact = [r for r in rows if norm(r["full_name"]) == " ".join(words)]
        return exact or rows

    # ---- units ----------------------------------------------------------------------------------
    def unit(self, department_id: str) -> sqlite3.Row:
        unit = self.units.get(department_id.strip())
        if unit is None:
            raise NotFound(f"not found: no department {department_id!r}; department ids look like D012 - find the "
                           "id with search_department")
        return unit

    def find_units(self, name: str) -> list[sqlite3.Row]:
        """Units whose name equals ``name`` (ignoring case), else those containing it."""
        key = norm(name)
        exact = [u for u in self.units.values() if norm(u["name"]) == key]
        found = exact or [u for u in self.units.values() if key in norm(u["name"])]
        if not found:
            close = [u["name"] for u in self.units.values() if any(w in norm(u["name"]) for w in key.split())][:5]
            hint = f"; similar names: {', '.join(close)}" if close else ""
            raise NotFound(f"not found: no department or team named {name!r}{hint}")
        return found

    def subtree_ids(self, department_id: str) -> list[str]:
        out, todo = [], [department_id]
        while todo:
            current = todo.pop(0)
            out.append(current)
            todo.extend(self.children.get(current, []))
        return out

    def path(self, department_id: str) -> list[sqlite3.Row]:
        """From the top of the company down to the unit."""
        chain = [self.unit(department_id)]
        while chain[0]["parent_id"]:
            chain.insert(0, self.units[chain[0]["parent_id"]])
        return chain

    def division(self, department_id: str) -> sqlite3.Row | None:
        return next((u for u in self.path(department_id) if u["kind"] == "division"), None)

    def managed_unit(self, employee_id: str) -> sqlite3.Row | None:
        return next((u for u in self.units.values() if u["manager_id"] == employee_id), None)

    def members(self, department_id: str) -> list[sqlite3.Row]:
        """Everyone in the unit and its sub-units: heads first, then by level (high to low) and name."""
        ids = self.subtree_ids(department_id)
        marks = ",".join("?" * len(ids))
        rows = self.rows(f"SELECT * FROM employees WHERE department_id IN ({marks})", *ids)
        heads = {u["manager_id"] for u in self.units.values()}
        order = {uid: i for i, uid in enumerate(ids)}
        return sorted(rows, key=lambda r: (r["employee_id"] not in heads, order[r["department_id"]], -r["level"],
                                           r["full_name"], r["employee_id"]))

    def name_of(self, employee_id: str | None) -> str | None:
        if not employee_id:
            return None
        row = self.con.execute("SELECT full_name FROM employees WHERE employee_id = ?", (employee_id,)).fetchone()
        return row[0] if row else None

    # ---- aggregates -----------------------------------------------------------------------------
    def department_stats(self, department_id: str) -> dict[str, Any]:
        unit = self.unit(department_id)
        members = self.members(department_id)
        ids = [m["employee_id"] for m in members]
        marks = ",".join("?" * len(ids))
        pending = self.con.execute(
            f"SELECT count(*) FROM leave_requests WHERE status = 'pending' AND employee_id IN ({marks})", ids).fetchone()[0]
        on_leave = self.con.execute(
            f"SELECT count(*) FROM attendance WHERE day = ? AND status IN ('leave', 'sick') AND employee_id IN ({marks})",
            [TODAY.isoformat(), *ids]).fetchone()[0]
        projects = self.con.execute(
            f"SELECT count(DISTINCT m.project_id) FROM project_members m JOIN projects p USING (project_id) "
            f"WHERE p.status = 'active' AND m.employee_id IN ({marks})", ids).fetchone()[0]
        tenure = sum(tenure_years(m["hire_date"]) for m in members) / len(members)
        parent = self.units.get(unit["parent_id"] or "")
        return {
            "department_id": unit["department_id"], "department": unit["name"], "kind": unit["kind"],
            "parent": parent["name"] if parent else None, "manager_id": unit["manager_id"],
            "manager_name": self.name_of(unit["manager_id"]), "location": unit["location"],
            "headcount": len(members), "direct_members": sum(m["department_id"] == department_id for m in members),
            "subunits": len(self.subtree_ids(department_id)) - 1, "average_tenure_years": round(tenure, 1),
            "levels": {f"L{k}": v for k, v in sorted(Counter(m["level"] for m in members).items())},
            "locations": dict(Counter(m["location"] for m in members).most_common()),
            "employment_types": dict(Counter(m["employment_type"] for m in members).most_common()),
            "pending_leave_requests": pending, "on_leave_today": on_leave, "active_projects": projects,
        }

    def attendance(self, employee_ids: list[str], first: date, last: date) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(employee_ids))
        return self.rows(f"SELECT * FROM attendance WHERE employee_id IN ({marks}) AND day BETWEEN ? AND ? "
                         "ORDER BY employee_id, day", *employee_ids, first.isoformat(), last.isoformat())
