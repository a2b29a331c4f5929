"""The generated company: size, realism and determinism (issue 3, deliverable 1)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from scenarios.hr.__main__ import main
from scenarios.hr.db import connect, content_hash, load_policies
from scenarios.hr.people import build_company

DOC = Path(__file__).resolve().parents[2] / "docs" / "hr-scenario.md"


def _one(con: sqlite3.Connection, sql: str) -> int:
    return con.execute(sql).fetchone()[0]


def test_company_has_the_size_and_shape_of_the_papers(hr_db: Path) -> None:
    con = connect(hr_db)
    assert _one(con, "SELECT count(*) FROM employees") >= 8000
    assert _one(con, "SELECT count(*) FROM departments") >= 40
    kinds = dict(con.execute("SELECT kind, count(*) FROM departments GROUP BY kind").fetchall())
    assert kinds["company"] == 1 and kinds["division"] >= 5 and kinds["team"] > kinds["department"] > 0
    assert _one(con, "SELECT count(*) FROM departments WHERE manager_id IS NULL") == 0
    assert _one(con, "SELECT count(*) FROM employees WHERE manager_id IS NULL") == 1  # the CEO
    roles = {r[0] for r in con.execute("SELECT DISTINCT role FROM users")}
    assert roles == {"employee", "manager", "hr", "hr_admin"}
    months = {r[0] for r in con.execute("SELECT DISTINCT substr(day, 1, 7) FROM attendance")}
    assert months == {"2026-04", "2026-05", "2026-06"}
    minimum = {"leave_requests": 8000, "leave_balances": 8000, "performance_reviews": 8000, "projects": 100,
               "project_members": 1000}
    assert {t: _one(con, f"SELECT count(*) FROM {t}") >= n for t, n in minimum.items()} == dict.fromkeys(minimum, True)


def test_duplicate_full_names_live_in_different_departments(hr_db: Path) -> None:
    con = connect(hr_db)
    rows = con.execute("SELECT full_name, count(DISTINCT department_id) FROM employees GROUP BY full_name "
                       "HAVING count(*) > 1").fetchall()
    assert len(rows) >= 50
    assert all(departments > 1 for _, departments in rows)


def test_salaries_sit_in_their_bands(hr_db: Path) -> None:
    con = connect(hr_db)
    outside = _one(con, "SELECT count(*) FROM salaries s JOIN employees e USING (employee_id) JOIN salary_bands b "
                        "ON b.job_family = e.job_family AND b.level = e.level "
                        "WHERE s.base_salary < b.min_salary * 0.99 OR s.base_salary > b.max_salary * 1.01")
    assert outside == 0


def test_leave_balances_add_up_to_the_requests(hr_db: Path) -> None:
    con = connect(hr_db)
    mismatched = _one(con, """
        SELECT count(*) FROM leave_balances b WHERE b.used + b.scheduled != (
          SELECT coalesce(sum(days), 0) FROM leave_requests r WHERE r.employee_id = b.employee_id
          AND r.leave_type = b.leave_type AND r.status = 'approved')""")
    assert mismatched == 0
    overdrawn = _one(con, "SELECT count(*) FROM leave_balances WHERE leave_type = 'annual' "
                          "AND used + scheduled > entitlement + carried_over")
    assert overdrawn == 0


def test_about_twenty_long_policy_documents() -> None:
    policies = load_policies()
    assert 18 <= len(policies) <= 25
    assert all(len(p.text) >= 3000 for p in policies), [p.policy_id for p in policies if len(p.text) < 3000]


def test_same_seed_gives_the_same_bytes_and_the_documented_build_output(
    hr_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again = tmp_path / "again.sqlite"
    assert main(["--build", "--db", str(again), "--log-level", "WARNING"]) == 0  # python -m scenarios.hr --build
    assert content_hash(again) == content_hash(hr_db)
    assert again.read_bytes() == hr_db.read_bytes()
    printed = capsys.readouterr().out
    assert printed.strip() and printed in DOC.read_text(encoding="utf-8")


def test_the_seed_drives_the_generator() -> None:
    a, b = build_company(random.Random(7)), build_company(random.Random(8))
    assert [p.full_name for p in a.people[:50]] != [p.full_name for p in b.people[:50]]
