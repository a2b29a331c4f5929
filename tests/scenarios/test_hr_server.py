"""The HR tool server: 25 tools, permissions enforced by the tools, long values, transports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import fastmcp
import pytest
from fastmcp.client.transports import StdioTransport
from fastmcp.utilities.tests import asgi_client

from scenarios.hr import FREE_TEXT_PARAMS, create_server
from scenarios.hr.db import connect

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def _pick(hr_db: Path, sql: str) -> Any:
    row = connect(hr_db).execute(sql).fetchone()
    assert row is not None, sql
    return row


async def _call(client: fastmcp.Client, tool: str, **args: Any) -> tuple[bool, Any]:
    result = await client.call_tool(tool, args, raise_on_error=False)
    if result.is_error:
        return False, result.content[0].text
    return True, result.structured_content


async def test_lists_exactly_25_distinct_tools_with_1_to_3_described_params(hr_client: fastmcp.Client) -> None:
    tools = await hr_client.list_tools()
    assert len(tools) == 25
    assert len({t.name for t in tools}) == 25
    for tool in tools:
        props = tool.input_schema["properties"]
        assert 1 <= len(props) <= 3, tool.name
        assert len(tool.description or "") >= 40, tool.name
    names = {t.name for t in tools}
    assert {"summarize", "check_permission", "generate_report", "draft_letter", "compare_employees"} <= names
    user_tools = [t.name for t in tools if "user_id" in t.input_schema["properties"]]
    assert len(user_tools) >= 5


async def test_free_text_params_are_marked_in_the_schema(hr_client: fastmcp.Client) -> None:
    marked = {t.name: tuple(p for p, s in t.input_schema["properties"].items() if s.get("x-free-text"))
              for t in await hr_client.list_tools()}
    assert {k: v for k, v in marked.items() if v} == FREE_TEXT_PARAMS


async def test_salary_is_visible_to_hr_and_self_but_not_to_managers_or_peers(
    hr_client: fastmcp.Client, hr_db: Path
) -> None:
    emp = _pick(hr_db, "SELECT e.employee_id, e.manager_id FROM employees e JOIN departments d USING (department_id) "
                       "WHERE d.kind = 'team' AND d.job_family = 'software' AND e.level = 3 ORDER BY 1 LIMIT 1")
    user = {r["employee_id"]: r["user_id"] for r in connect(hr_db).execute("SELECT * FROM users")}
    peer = _pick(hr_db, f"SELECT u.user_id FROM employees e JOIN users u USING (employee_id) WHERE e.manager_id = "
                        f"'{emp['manager_id']}' AND e.employee_id != '{emp['employee_id']}' AND u.role = 'employee'")[0]
    hr_user = _pick(hr_db, "SELECT user_id FROM users WHERE role = 'hr' ORDER BY 1")[0]
    cases = {hr_user: True, user[emp["employee_id"]]: True, user[emp["manager_id"]]: False, peer: False}
    for uid, visible in cases.items():
        ok, out = await _call(hr_client, "get_salary", user_id=uid, employee_id=emp["employee_id"])
        assert ok is visible, (uid, out)
        if not ok:
            assert out.startswith("permission denied:")
        ok2, check = await _call(hr_client, "check_permission", user_id=uid, action="view_salary",
                                 employee_id=emp["employee_id"])
        assert ok2 and check["allowed"] is visible and check["reason"]


async def test_executive_pay_needs_hr_admin(hr_client: fastmcp.Client, hr_db: Path) -> None:
    vp = _pick(hr_db, "SELECT employee_id FROM employees WHERE level = 8 ORDER BY 1")[0]
    hr_user = _pick(hr_db, "SELECT user_id FROM users WHERE role = 'hr' ORDER BY 1")[0]
    admin = _pick(hr_db, "SELECT user_id FROM users WHERE role = 'hr_admin' ORDER BY 1")[0]
    ok, out = await _call(hr_client, "get_salary", user_id=hr_user, employee_id=vp)
    assert not ok and "HR administrators" in out
    ok, out = await _call(hr_client, "get_salary", user_id=admin, employee_id=vp)
    assert ok and out["base_salary"] > 0


async def test_managers_see_their_line_only(hr_client: fastmcp.Client, hr_db: Path) -> None:
    team = _pick(hr_db, "SELECT department_id, manager_id FROM departments WHERE kind = 'team' AND job_family = 'sales' "
                        "ORDER BY 1")
    member = _pick(hr_db, f"SELECT employee_id FROM employees WHERE department_id = '{team[0]}' "
                          f"AND employee_id != '{team[1]}' ORDER BY 1")[0]
    outsider = _pick(hr_db, f"SELECT employee_id FROM employees WHERE department_id != '{team[0]}' AND level < 6 "
                            "AND job_family = 'sales' ORDER BY 1")[0]
    manager = _pick(hr_db, f"SELECT user_id FROM users WHERE employee_id = '{team[1]}'")[0]
    assert (await _call(hr_client, "get_leave_balance", user_id=manager, employee_id=member))[0]
    assert (await _call(hr_client, "get_performance_reviews", user_id=manager, employee_id=member))[0]
    assert (await _call(hr_client, "get_department_attendance", user_id=manager, department_id=team[0],
                        month="2026-05"))[0]
    for tool, args in (("get_leave_balance", {"employee_id": outsider}),
                       ("get_attendance", {"employee_id": outsider, "month": "2026-05"}),
                       ("draft_letter", {"employee_id": member, "letter_type": "employment_verification"})):
        ok, out = await _call(hr_client, tool, user_id=manager, **args)
        assert not ok and out.startswith("permission denied:"), (tool, out)


async def test_team_members_cannot_see_department_attendance(hr_client: fastmcp.Client, hr_db: Path) -> None:
    row = _pick(hr_db, "SELECT e.department_id, u.user_id FROM employees e JOIN users u USING (employee_id) "
                       "WHERE u.role = 'employee' ORDER BY 2")
    access = await _call(hr_client, "check_department_access", user_id=row[1], department_id=row[0])
    assert access[0] and access[1]["allowed"] is False
    ok, out = await _call(hr_client, "get_department_attendance", user_id=row[1], department_id=row[0], month="2026-04")
    assert not ok and out.startswith("permission denied:")


async def test_some_tools_return_long_values(hr_client: fastmcp.Client) -> None:
    dept = (await _call(hr_client, "search_department", name="Payroll"))[1]
    members = (await _call(hr_client, "get_department_members", department_id=dept["department_id"]))[1]
    assert members["members"].count("\n") + 1 == members["headcount"] and len(members["members"]) > 2000
    policy = (await _call(hr_client, "get_policy", policy_id="POL-001"))[1]
    assert len(policy["text"]) >= 3000


async def test_duplicate_names_are_told_apart_by_department(hr_client: fastmcp.Client, hr_db: Path) -> None:
    name, dept = _pick(hr_db, "SELECT e.full_name, d.name FROM employees e JOIN departments d USING (department_id) "
                              "WHERE e.full_name IN (SELECT full_name FROM employees GROUP BY full_name "
                              "HAVING count(DISTINCT department_id) > 1) ORDER BY 1, 2")
    ok, everyone = await _call(hr_client, "search_employee", name=name)
    assert ok and everyone["count"] >= 2 and "narrow the search" in everyone["note"]
    ok, one = await _call(hr_client, "search_employee", name=name, department=dept)
    assert ok and one["count"] == 1 and one["department"] == dept


async def test_wrong_ids_get_errors_that_say_what_to_do(hr_client: fastmcp.Client) -> None:
    ok, out = await _call(hr_client, "get_employee", employee_id="E99999")
    assert not ok and "search_employee" in out
    ok, out = await _call(hr_client, "search_department", name="Underwater Basket Weaving")
    assert not ok and out.startswith("not found")
    ok, out = await _call(hr_client, "get_attendance", user_id="U40001", employee_id="E10001", month="2025-01")
    assert not ok


async def test_generation_tools_are_deterministic_templates(hr_client: fastmcp.Client) -> None:
    letters = [await _call(hr_client, "compare_employees", employee_id_a="E10001", employee_id_b="E10002")
               for _ in range(2)]
    assert letters[0] == letters[1] and letters[0][0]
    ok, answer = await _call(hr_client, "summarize", template="general", data="The answer is 42.")
    assert ok and answer["answer"] == "The answer is 42."
    ok, report = await _call(hr_client, "generate_report", report_type="attendance", subject="X", data="no table here")
    assert ok and "No attendance table was recognised" in report["report"]


async def test_serves_streamable_http(hr_db: Path) -> None:
    async with asgi_client(create_server(hr_db)) as client:
        assert len(await client.list_tools()) == 25
        result = await client.call_tool("count_working_days", {"start_date": "2026-07-01", "end_date": "2026-07-10"})
        assert result.structured_content["working_days"] == 7  # 2026-07-03 is a company holiday


async def test_python_m_scenarios_hr_serves_stdio(hr_db: Path) -> None:
    transport = StdioTransport(command=sys.executable, args=["-m", "scenarios.hr", "--db", str(hr_db),
                                                             "--log-level", "WARNING"], cwd=str(ROOT))
    async with fastmcp.Client(transport) as client:
        tools = await client.list_tools()
        result = await client.call_tool("search_policy", {"query": "remote work"})
    assert len(tools) == 25
    assert json.loads(result.content[0].text)["policy_id"] == "POL-005"
