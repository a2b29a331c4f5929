"""Fixtures of the server tests: the HR company database (built once per session), people in it, and
``RoutineService``s wired to the HR server in process as their real downstream server."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from memory.embeddings import HashEmbedder
from routines.backends.base import Backend
from routines.hub import ToolHub
from routines.model import Routine
from routines.scenario import Scenario
from scenarios.hr.db import build_database
from scenarios.hr.server import create_server
from server.service import RoutineService
from server.settings import Settings

_UNSET: Any = object()


@pytest.fixture(scope="session")
def hr_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_database(tmp_path_factory.mktemp("hr") / "hr.sqlite")


@dataclass(frozen=True)
class People:
    hr_user: str
    staff_user: str
    employee_id: str
    employee_name: str
    department: str


@pytest.fixture(scope="session")
def people(hr_db: Path) -> People:
    """An HR user, an ordinary employee's account, and a (non-executive) employee with a unique name."""
    con = sqlite3.connect(hr_db)
    try:
        hr_user = con.execute("select user_id from users where role = 'hr' and status = 'active' "
                              "order by user_id limit 1").fetchone()[0]
        staff_user, staff_employee = con.execute(
            "select user_id, employee_id from users where role = 'employee' and status = 'active' "
            "order by user_id limit 1").fetchone()
        employee_id, name, department = con.execute(
            "select e.employee_id, e.full_name, d.name from employees e join departments d "
            "on d.department_id = e.department_id where e.status = 'active' and e.level between 2 and 4 "
            "and e.employee_id != ? and e.manager_id is not null "
            "and (select count(*) from employees x where x.full_name = e.full_name) = 1 "
            "order by e.employee_id limit 1", [staff_employee]).fetchone()
    finally:
        con.close()
    return People(hr_user, staff_user, employee_id, name, department)


@pytest.fixture(scope="session")
def hr_routines() -> dict[str, Routine]:
    return Scenario.load("hr").routine_map()


ServiceFactory = Callable[..., RoutineService]


@pytest.fixture
async def make_service(tmp_path: Path, hr_db: Path) -> AsyncIterator[ServiceFactory]:
    """``make_service(data_dir=..., executor=..., planner=..., **settings)``: a service over the in-process HR
    server with the hashing embedder (closed after the test). ``executor`` defaults to none (bound runs)."""
    made: list[RoutineService] = []

    def make(
        data_dir: Path | None = None, *, executor: Backend | None = _UNSET, planner: Backend | None = None,
        **settings: Any,
    ) -> RoutineService:
        settings.setdefault("executor_backend", "none")
        service = RoutineService(
            Settings(data_dir=data_dir or tmp_path / "data", **settings),
            hub=ToolHub({"hr": create_server(hr_db)}),
            executor_backend=None if executor is _UNSET else executor,
            planner_backend=planner,
            embedder=HashEmbedder(),
        )
        made.append(service)
        return service

    yield make
    for service in made:
        await service.aclose()
