"""The HR scenario's company database: schema, the seeded generator and read-only connections.

``build_database(path, seed=7)`` writes a SQLite file with more than 8,000 employees in 82 org units, three
months of daily attendance, leave, reviews, projects, 21 policy documents and user accounts. It takes a few
seconds, and the same seed gives the same rows in the same order (see :func:`content_hash`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from scenarios.hr import people, records
from scenarios.hr.workdays import HOLIDAYS, TODAY

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
POLICY_DIR = people.DATA_DIR / "policies"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE departments (
  department_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, parent_id TEXT,
  manager_id TEXT, job_family TEXT NOT NULL, location TEXT NOT NULL, cost_center TEXT NOT NULL);
CREATE TABLE employees (
  employee_id TEXT PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL, full_name TEXT NOT NULL,
  email TEXT NOT NULL UNIQUE, department_id TEXT NOT NULL, manager_id TEXT, title TEXT NOT NULL,
  job_family TEXT NOT NULL, level INTEGER NOT NULL, hire_date TEXT NOT NULL, location TEXT NOT NULL,
  employment_type TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE salary_bands (
  band_id TEXT PRIMARY KEY, job_family TEXT NOT NULL, level INTEGER NOT NULL, min_salary INTEGER NOT NULL,
  mid_salary INTEGER NOT NULL, max_salary INTEGER NOT NULL, currency TEXT NOT NULL);
CREATE TABLE salaries (
  employee_id TEXT PRIMARY KEY, base_salary INTEGER NOT NULL, currency TEXT NOT NULL,
  bonus_target_pct INTEGER NOT NULL, last_change_date TEXT NOT NULL, last_change_pct REAL NOT NULL,
  pay_frequency TEXT NOT NULL);
CREATE TABLE users (
  user_id TEXT PRIMARY KEY, employee_id TEXT NOT NULL UNIQUE, username TEXT NOT NULL, role TEXT NOT NULL,
  status TEXT NOT NULL);
CREATE TABLE holidays (day TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE attendance (
  employee_id TEXT NOT NULL, day TEXT NOT NULL, status TEXT NOT NULL, check_in TEXT, check_out TEXT,
  PRIMARY KEY (employee_id, day)) WITHOUT ROWID;
CREATE TABLE leave_requests (
  request_id TEXT PRIMARY KEY, employee_id TEXT NOT NULL, leave_type TEXT NOT NULL, start_date TEXT NOT NULL,
  end_date TEXT NOT NULL, days REAL NOT NULL, status TEXT NOT NULL, submitted_on TEXT NOT NULL,
  approver_id TEXT, decided_on TEXT, comment TEXT NOT NULL);
CREATE TABLE leave_balances (
  employee_id TEXT NOT NULL, year INTEGER NOT NULL, leave_type TEXT NOT NULL, entitlement REAL NOT NULL,
  carried_over REAL NOT NULL, used REAL NOT NULL, scheduled REAL NOT NULL, pending REAL NOT NULL,
  PRIMARY KEY (employee_id, year, leave_type));
CREATE TABLE performance_reviews (
  review_id TEXT PRIMARY KEY, employee_id TEXT NOT NULL, period TEXT NOT NULL, rating INTEGER NOT NULL,
  goals_met_pct INTEGER NOT NULL, reviewer_id TEXT, summary TEXT NOT NULL, calibrated INTEGER NOT NULL);
CREATE TABLE projects (
  project_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, division_id TEXT NOT NULL, status TEXT NOT NULL,
  start_date TEXT NOT NULL, end_date TEXT NOT NULL, lead_id TEXT NOT NULL, budget INTEGER NOT NULL,
  description TEXT NOT NULL);
CREATE TABLE project_members (
  project_id TEXT NOT NULL, employee_id TEXT NOT NULL, role TEXT NOT NULL, allocation_pct INTEGER NOT NULL,
  PRIMARY KEY (project_id, employee_id));
CREATE TABLE policies (
  policy_id TEXT PRIMARY KEY, title TEXT NOT NULL, category TEXT NOT NULL, version TEXT NOT NULL,
  effective_date TEXT NOT NULL, owner TEXT NOT NULL, keywords TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX employees_name ON employees (full_name COLLATE NOCASE);
CREATE INDEX employees_department ON employees (department_id);
CREATE INDEX employees_manager ON employees (manager_id);
CREATE INDEX leave_requests_employee ON leave_requests (employee_id);
CREATE INDEX reviews_employee ON performance_reviews (employee_id);
CREATE INDEX members_employee ON project_members (employee_id);
"""

TABLES = ("meta", "departments", "employees", "salary_bands", "salaries", "users", "holidays", "attendance",
          "leave_requests", "leave_balances", "performance_reviews", "projects", "project_members", "policies")


@dataclass(frozen=True)
class Policy:
    policy_id: str
    title: str
    category: str
    version: str
    effective_date: str
    owner: str
    keywords: str
    text: str


def load_policies(directory: Path = POLICY_DIR) -> list[Policy]:
    """Policy documents: ``# Title``, ``key: value`` lines, a blank line, then the text."""
    out = []
    for path in sorted(directory.glob("POL-*.md")):
        head, _, body = path.read_text(encoding="utf-8").partition("\n\n")
        lines = head.splitlines()
        meta = dict(line.split(": ", 1) for line in lines[1:])
        out.append(Policy(path.stem, lines[0].removeprefix("# ").strip(), meta["category"], meta["version"],
                          meta["effective"], meta["owner"], meta["keywords"], body.strip()))
    return out


def build_database(path: str | Path, seed: int = 7) -> Path:
    """Generate the company database at ``path`` (replacing any file there) and return the path."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    rng = random.Random(seed)
    company = people.build_company(rng)
    tables: dict[str, list[tuple]] = {
        "meta": [("schema_version", str(SCHEMA_VERSION)), ("seed", str(seed)), ("today", TODAY.isoformat()),
                 ("company", company.name)],
        "departments": people.unit_rows(company),
        "employees": people.employee_rows(company),
        "salary_bands": people.band_rows(company.families),
        "salaries": people.salary_rows(company, random.Random(seed * 1000 + 1)),
        "users": people.user_rows(company),
        "holidays": [(d.isoformat(), name) for d, name in sorted(HOLIDAYS.items())],
    }
    requests, balances, leave_days = records.generate_leave(company, random.Random(seed * 1000 + 2))
    tables["leave_requests"], tables["leave_balances"] = requests, balances
    tables["attendance"] = records.generate_attendance(company, leave_days, random.Random(seed * 1000 + 3))
    tables["performance_reviews"] = records.generate_reviews(company, random.Random(seed * 1000 + 4))
    tables["projects"], tables["project_members"] = records.generate_projects(company, random.Random(seed * 1000 + 5))
    tables["policies"] = [tuple(vars(p).values()) for p in load_policies()]
    con = sqlite3.connect(tmp)
    try:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.executescript(SCHEMA)
        with con:
            for table in TABLES:
                rows = tables[table]
                marks = ",".join("?" * len(rows[0]))
                con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        con.execute("ANALYZE")
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)
    logger.info("built HR database %s (seed %d, %d employees)", path, seed, len(company.people))
    return path


def connect(path: str | Path) -> sqlite3.Connection:
    """A read-only connection with ``sqlite3.Row`` rows. Raises FileNotFoundError with what to run."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no HR database at {path}; build it with `python -m scenarios.hr --build --db {path}`")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    con.row_factory = sqlite3.Row
    return con


def content_hash(path: str | Path) -> str:
    """SHA-256 over every table's rows in primary-key order: equal for databases with equal data."""
    con = connect(path)
    digest = hashlib.sha256()
    try:
        for table in TABLES:
            for row in con.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(repr(tuple(row)).encode())
    finally:
        con.close()
    return digest.hexdigest()


def counts(path: str | Path) -> dict[str, int]:
    con = connect(path)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        con.close()
