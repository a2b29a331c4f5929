"""The HR scenario's downstream MCP server: 25 tools over the company database.

Data queries, permission verification, template generation (reports, letters, comparisons) and the
``summarize`` tool that ends every Routine. Tools that need the current user take ``user_id`` (a system
parameter); data tools enforce access and answer ``permission denied: ...`` as a tool error. Parameters
whose value is free text (checked for presence and type only in evaluation) would carry ``"x-free-text":
true`` in their JSON schema and be listed in :data:`FREE_TEXT_PARAMS`; since calls pass earlier results by
reference, no HR parameter is free text.

One module of about 400 lines on purpose: it is the scenario's one MCP server, its 25 tools side by side as
a downstream team would write them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from scenarios.hr import answers, reports, views
from scenarios.hr.permissions import ACTIONS, decide, department_access, require
from scenarios.hr.repository import HRData, NotFound, norm
from scenarios.hr.workdays import ATTENDANCE_MONTHS, HOLIDAYS, days, parse_date, parse_month, working_days

logger = logging.getLogger(__name__)

FREE_TEXT_PARAMS: dict[str, tuple[str, ...]] = {}
"""None: a call passes earlier results by their memory keys, which the checker compares exactly (the
``data`` of ``summarize`` and ``generate_report`` was free text while calls copied whole results)."""
INSTRUCTIONS = (
    "HR system of Meridian Group (8,240 employees). Find people with search_employee and departments with "
    "search_department, then use the ids they return. Pass the current user's id as user_id where asked. "
    "End every answer with the summarize tool."
)

UserId = Annotated[str, Field(description="The current user's id, a system parameter (e.g. U40123).",
                              pattern=r"^U\d{5}$", max_length=6)]
EmployeeId = Annotated[str, Field(description="Employee id as returned by search_employee (e.g. E10234).",
                                  pattern=r"^E\d{5}$", max_length=6)]
DepartmentId = Annotated[str, Field(description="Department id as returned by search_department (e.g. D012).",
                                    pattern=r"^D\d{3}$", max_length=4)]
Month = Annotated[str, Field(description="Month as YYYY-MM (attendance is kept for 2026-04 to 2026-06).",
                             pattern=r"^\d{4}-\d{2}$", max_length=7)]
Day = Annotated[str, Field(description="Date as YYYY-MM-DD.", pattern=r"^\d{4}-\d{2}-\d{2}$", max_length=10)]
FreeData = Annotated[
    dict[str, Any] | list[Any] | str,
    Field(description="The facts to use: earlier results by their memory keys (an object of them, e.g. "
          "{\"employee\": \"memory_get_employee\"}) or one key."),
]


def _month(month: str) -> tuple[Any, Any]:
    if month not in ATTENDANCE_MONTHS:
        raise ToolError(f"no attendance recorded for {month}; attendance is kept for {', '.join(ATTENDANCE_MONTHS)}")
    return parse_month(month)


READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True)
"""Every HR tool reads the database or writes text from a template: a call lost with its connection may be
repeated (routines/hub.py repeats only such calls)."""


def create_server(db_path: str | Path) -> FastMCP:
    """The HR tool server over the database at ``db_path`` (build it first with ``build_database``)."""
    db = HRData(db_path)
    company = db.con.execute("SELECT value FROM meta WHERE key = 'company'").fetchone()[0]
    mcp = FastMCP("hr", instructions=INSTRUCTIONS)

    # ---- people and permissions --------------------------------------------------------------------
    @mcp.tool(annotations=READ_ONLY)
    async def get_user_profile(user_id: UserId) -> dict[str, Any]:
        """Look up the current user: name, role (employee, manager, hr or hr_admin), title, department and
        the unit they manage, if any."""
        user = db.user(user_id)
        emp = db.employee_row(user["employee_id"])
        managed = db.managed_unit(emp["employee_id"])
        return {"user_id": user["user_id"], "employee_id": emp["employee_id"], "name": emp["full_name"],
                "role": user["role"], "title": emp["title"], "department_id": emp["department_id"],
                "department": db.units[emp["department_id"]]["name"],
                "manages": managed["name"] if managed else None,
                "manages_department_id": managed["department_id"] if managed else None}

    @mcp.tool(annotations=READ_ONLY)
    async def check_permission(
        user_id: UserId,
        action: Annotated[Literal[ACTIONS], Field(description="What the user wants to do.")],  # type: ignore[valid-type]
        employee_id: EmployeeId,
    ) -> dict[str, Any]:
        """Check whether the current user may do an action on an employee's records (see their salary, leave,
        attendance or reviews, approve their leave, issue them a letter). Returns allowed and the reason."""
        decision = decide(db, user_id, action, employee_id)
        return {"allowed": decision.allowed, "reason": decision.reason, "user_id": user_id, "action": action,
                "employee_id": employee_id}

    @mcp.tool(annotations=READ_ONLY)
    async def check_department_access(user_id: UserId, department_id: DepartmentId) -> dict[str, Any]:
        """Check whether the current user may see a whole department's detailed records (attendance).
        Returns allowed and the reason."""
        decision = department_access(db, user_id, department_id)
        return {"allowed": decision.allowed, "reason": decision.reason, "user_id": user_id,
                "department_id": department_id}

    @mcp.tool(annotations=READ_ONLY)
    async def search_employee(
        name: Annotated[str, Field(description="Full or partial name, e.g. 'Maria Garcia'.", max_length=80)],
        department: Annotated[str, Field(description="Department or team name to narrow the search; empty for "
                                                     "all.", max_length=80)] = "",
    ) -> dict[str, Any]:
        """Find an employee by name, optionally within a department or team (names can repeat across the
        company). Returns the best match's employee_id and all matches."""
        rows = db.search_employees(name, department)
        if not rows:
            where = f" in {department}" if norm(department) else ""
            raise NotFound(f"not found: no employee named {name!r}{where}; check the spelling or drop the department")
        best = views.person(rows[0], db)
        result = {"query": name, "department_filter": department, "count": len(rows), **best,
                  "matches": [views.person(r, db) for r in rows[:10]]}
        if len(rows) > 1:
            result["note"] = f"{len(rows)} employees match; narrow the search with the department parameter"
        return result

    @mcp.tool(annotations=READ_ONLY)
    async def get_employee(employee_id: EmployeeId) -> dict[str, Any]:
        """Get an employee's directory profile: title, level, department, division, manager, hire date, tenure,
        location and contact."""
        return views.employee(db.employee_row(employee_id), db)

    @mcp.tool(annotations=READ_ONLY)
    async def get_manager_chain(employee_id: EmployeeId) -> dict[str, Any]:
        """Get an employee's reporting line: the direct manager and every manager above, up to the CEO."""
        emp = db.employee_row(employee_id)
        chain = [views.person(r, db) for r in db.manager_chain(employee_id)]
        return {"employee_id": employee_id, "name": emp["full_name"], "direct_manager": chain[0] if chain else None,
                "chain": chain, "chain_text": " -> ".join(f"{c['name']} ({c['title']})" for c in chain)}

    @mcp.tool(annotations=READ_ONLY)
    async def get_employee_projects(employee_id: EmployeeId) -> dict[str, Any]:
        """List the projects an employee works on, with their role, allocation and the project status."""
        emp = db.employee_row(employee_id)
        rows = db.rows("SELECT p.*, m.role, m.allocation_pct FROM project_members m JOIN projects p USING "
                         "(project_id) WHERE m.employee_id = ? ORDER BY p.status = 'active' DESC, p.start_date DESC",
                         employee_id)
        projects = [{"project_id": r["project_id"], "name": r["name"], "role": r["role"],
                     "allocation_pct": r["allocation_pct"], "status": r["status"], "start_date": r["start_date"],
                     "end_date": r["end_date"]} for r in rows]
        return {"employee_id": employee_id, "name": emp["full_name"], "count": len(projects), "projects": projects}

    @mcp.tool(annotations=READ_ONLY)
    async def compare_employees(
        employee_id_a: EmployeeId,
        employee_id_b: EmployeeId,
        aspect: Annotated[Literal[reports.COMPARE_ASPECTS], Field(description="What to compare.")] = "all",  # type: ignore[valid-type]
    ) -> dict[str, Any]:
        """Compare two employees side by side (tenure, level and title, projects) as a table."""
        sides = []
        for emp_id in (employee_id_a, employee_id_b):
            e = views.employee(db.employee_row(emp_id), db)
            e["projects"] = [r["name"] for r in db.rows(
                "SELECT p.name FROM project_members m JOIN projects p USING (project_id) WHERE m.employee_id = ? "
                "AND p.status = 'active' ORDER BY p.name", emp_id)]
            sides.append(e)
        keep = ("employee_id", "name", "title", "level", "department", "hire_date", "tenure_years", "projects")
        return {"aspect": aspect, "employees": [{k: s[k] for k in keep} for s in sides],
                "comparison": reports.render_comparison(sides[0], sides[1], aspect)}

    # ---- pay ------------------------------------------------------------------------------------------
    @mcp.tool(annotations=READ_ONLY)
    async def get_salary(user_id: UserId, employee_id: EmployeeId) -> dict[str, Any]:
        """Get an employee's individual salary (base pay, bonus target, last change). Only HR, and the employee
        themself, may see it; others get a permission error (use get_salary_band instead)."""
        require(decide(db, user_id, "view_salary", employee_id), f"the salary of {employee_id}")
        emp = db.employee_row(employee_id)
        s = db.con.execute("SELECT * FROM salaries WHERE employee_id = ?", (employee_id,)).fetchone()
        return {"employee_id": employee_id, "name": emp["full_name"], "title": emp["title"], "level": emp["level"],
                "base_salary": s["base_salary"], "currency": s["currency"], "pay_frequency": s["pay_frequency"],
                "bonus_target_pct": s["bonus_target_pct"], "last_change_date": s["last_change_date"],
                "last_change_pct": s["last_change_pct"]}

    @mcp.tool(annotations=READ_ONLY)
    async def get_salary_band(employee_id: EmployeeId) -> dict[str, Any]:
        """Get the salary band (minimum, midpoint, maximum) of an employee's job family and level. Bands are
        open to everyone."""
        emp = db.employee_row(employee_id)
        band = db.con.execute("SELECT * FROM salary_bands WHERE job_family = ? AND level = ?",
                                (emp["job_family"], emp["level"])).fetchone()
        return {"employee_id": employee_id, "name": emp["full_name"], "title": emp["title"], "level": emp["level"],
                "job_family": emp["job_family"], "band_id": band["band_id"], "band_min": band["min_salary"],
                "band_mid": band["mid_salary"], "band_max": band["max_salary"], "currency": band["currency"]}

    # ---- leave and attendance -------------------------------------------------------------------------
    @mcp.tool(annotations=READ_ONLY)
    async def get_leave_balance(user_id: UserId, employee_id: EmployeeId) -> dict[str, Any]:
        """Get an employee's 2026 leave balances (annual, sick, personal): entitlement, carried over, used,
        scheduled, pending and remaining days. Visible to the employee, their managers and HR."""
        require(decide(db, user_id, "view_leave", employee_id), f"the leave balance of {employee_id}")
        emp = db.employee_row(employee_id)
        balances = []
        for b in db.rows("SELECT * FROM leave_balances WHERE employee_id = ? ORDER BY leave_type", employee_id):
            remaining = b["entitlement"] + b["carried_over"] - b["used"] - b["scheduled"]
            balances.append({"leave_type": b["leave_type"], "entitlement": b["entitlement"],
                             "carried_over": b["carried_over"], "used": b["used"], "scheduled": b["scheduled"],
                             "pending": b["pending"], "remaining": remaining})
        return {"employee_id": employee_id, "name": emp["full_name"], "year": 2026, "balances": balances}

    @mcp.tool(annotations=READ_ONLY)
    async def get_leave_requests(
        user_id: UserId,
        employee_id: EmployeeId,
        status: Annotated[Literal["pending", "approved", "rejected", "cancelled", "all"],
                          Field(description="Which requests to list.")] = "all",
    ) -> dict[str, Any]:
        """List an employee's 2026 leave requests, optionally only those with one status. Visible to the
        employee, their managers and HR."""
        require(decide(db, user_id, "view_leave", employee_id), f"the leave requests of {employee_id}")
        emp = db.employee_row(employee_id)
        rows = db.rows("SELECT * FROM leave_requests WHERE employee_id = ? AND (? = 'all' OR status = ?) "
                         "ORDER BY start_date", employee_id, status, status)
        requests = [{k: r[k] for k in ("request_id", "leave_type", "start_date", "end_date", "days", "status",
                                       "submitted_on", "decided_on")} for r in rows]
        return {"employee_id": employee_id, "name": emp["full_name"], "status_filter": status,
                "count": len(requests), "requests": requests}

    @mcp.tool(annotations=READ_ONLY)
    async def count_working_days(start_date: Day, end_date: Day) -> dict[str, Any]:
        """Count the working days between two dates (inclusive), leaving out weekends and company holidays."""
        start, end = parse_date(start_date), parse_date(end_date)
        if end < start:
            raise ToolError(f"end_date {end_date} is before start_date {start_date}; swap them")
        if (end - start).days > 366:
            raise ToolError("the period is longer than a year; count at most one year at a time")
        work = working_days(start, end)
        holidays = [{"date": d.isoformat(), "name": HOLIDAYS[d]} for d in days(start, end)
                    if d in HOLIDAYS and d.weekday() < 5]
        calendar_days = (end - start).days + 1
        return {"start_date": start_date, "end_date": end_date, "calendar_days": calendar_days,
                "working_days": len(work), "weekend_days": sum(d.weekday() >= 5 for d in days(start, end)),
                "holidays": holidays}

    @mcp.tool(annotations=READ_ONLY)
    async def get_attendance(user_id: UserId, employee_id: EmployeeId, month: Month) -> dict[str, Any]:
        """Get one employee's daily attendance for a month (status and check-in/out times per day) with a
        summary. Visible to the employee, their managers and HR."""
        require(decide(db, user_id, "view_attendance", employee_id), f"the attendance of {employee_id}")
        first, last = _month(month)
        emp = db.employee_row(employee_id)
        rows = db.attendance([employee_id], first, last)
        counts = views.attendance_counts(rows)
        return {"employee_id": employee_id, "name": emp["full_name"], "month": month, "working_days": len(rows),
                "summary": dict(counts), "attendance_rate": views.attendance_rate(counts),
                "table": views.day_lines(rows)}

    @mcp.tool(annotations=READ_ONLY)
    async def get_performance_reviews(user_id: UserId, employee_id: EmployeeId) -> dict[str, Any]:
        """Get an employee's performance reviews (period, rating 1-5, goals met, reviewer, summary), newest
        first. Visible to the employee, their managers and HR."""
        require(decide(db, user_id, "view_review", employee_id), f"the performance reviews of {employee_id}")
        emp = db.employee_row(employee_id)
        rows = db.rows("SELECT * FROM performance_reviews WHERE employee_id = ? ORDER BY period DESC", employee_id)
        reviews = [{"period": r["period"], "rating": r["rating"], "rating_label": views.RATING_LABEL[r["rating"]],
                    "goals_met_pct": r["goals_met_pct"], "reviewer": db.name_of(r["reviewer_id"]),
                    "summary": r["summary"]} for r in rows]
        average = round(sum(r["rating"] for r in reviews) / len(reviews), 1) if reviews else None
        return {"employee_id": employee_id, "name": emp["full_name"], "count": len(reviews),
                "latest_rating": reviews[0]["rating"] if reviews else None, "average_rating": average,
                "reviews": reviews}

    # ---- departments ------------------------------------------------------------------------------------
    @mcp.tool(annotations=READ_ONLY)
    async def search_department(
        name: Annotated[str, Field(description="Department or team name, e.g. 'Payroll'.", max_length=80)],
    ) -> dict[str, Any]:
        """Find a department, team or division by name. Returns its department_id, parent, manager and
        headcount."""
        units = db.find_units(name)
        best = units[0]
        parent = db.units.get(best["parent_id"] or "")
        division = db.division(best["department_id"])
        return {"query": name, "count": len(units), "department_id": best["department_id"], "name": best["name"],
                "kind": best["kind"], "parent": parent["name"] if parent else None,
                "division": division["name"] if division else None, "manager_id": best["manager_id"],
                "manager_name": db.name_of(best["manager_id"]),
                "headcount": len(db.members(best["department_id"])),
                "matches": [{"department_id": u["department_id"], "name": u["name"], "kind": u["kind"]}
                            for u in units[:10]]}

    @mcp.tool(annotations=READ_ONLY)
    async def get_department_stats(department_id: DepartmentId) -> dict[str, Any]:
        """Get a department's key figures: headcount, sub-units, average tenure, level mix, locations, people on
        leave today, pending leave requests and active projects."""
        return db.department_stats(department_id)

    @mcp.tool(annotations=READ_ONLY)
    async def get_department_members(department_id: DepartmentId) -> dict[str, Any]:
        """List everyone in a department and its sub-units (id, name, title, level, team, location, hire date),
        one person per line."""
        unit = db.unit(department_id)
        members = db.members(department_id)
        return {"department_id": department_id, "department": unit["name"], "kind": unit["kind"],
                "headcount": len(members), "members": views.member_lines(members, db)}

    @mcp.tool(annotations=READ_ONLY)
    async def get_org_chart(department_id: DepartmentId) -> dict[str, Any]:
        """Get the org chart around a department: the units above it with their heads, the units below it with
        managers and headcounts, and for a team the mix of roles."""
        unit = db.unit(department_id)
        path = " > ".join(u["name"] for u in db.path(department_id))
        return {"department_id": department_id, "department": unit["name"], "path": path,
                "chart": views.org_chart(db, department_id)}

    @mcp.tool(annotations=READ_ONLY)
    async def get_department_attendance(user_id: UserId, department_id: DepartmentId, month: Month) -> dict[str, Any]:
        """Get a month's attendance for everyone in a department: per-person day counts (present, remote,
        leave, sick, absent, late) as a table, with totals. Visible to the department's managers and HR."""
        unit = db.unit(department_id)
        require(department_access(db, user_id, department_id), f"the attendance of {unit['name']}")
        first, last = _month(month)
        members = db.members(department_id)
        rows = db.attendance([m["employee_id"] for m in members], first, last)
        table, totals = views.department_table(members, rows)
        return {"department_id": department_id, "department": unit["name"], "month": month,
                "working_days": len(working_days(first, last)), "headcount": len(members), "totals": dict(totals),
                "attendance_rate": views.attendance_rate(totals), "table": table}

    # ---- policies -----------------------------------------------------------------------------------------
    @mcp.tool(annotations=READ_ONLY)
    async def search_policy(
        query: Annotated[str, Field(description="Topic to look for, e.g. 'annual leave' or 'remote work'.",
                                    max_length=80)],
    ) -> dict[str, Any]:
        """Search the company's HR policy documents by topic. Returns the best match's policy_id and the
        other matches."""
        words = [w for w in re.findall(r"[a-z0-9]+", query.casefold()) if w not in {"the", "of", "and", "policy", "a"}]
        scored = []
        for p in db.rows("SELECT policy_id, title, category, keywords FROM policies ORDER BY policy_id"):
            title, keywords = p["title"].casefold(), [k.strip() for k in p["keywords"].casefold().split(",")]
            score = 5 * any(k == " ".join(words) for k in keywords)
            score += sum(3 * (w in title.split()) + any(w in k.split() for k in keywords) for w in words)
            if score:
                scored.append((score, p))
        if not scored:
            raise NotFound(f"not found: no policy about {query!r}; try a broader topic such as 'leave' or 'pay'")
        scored.sort(key=lambda sp: (-sp[0], sp[1]["policy_id"]))
        best = scored[0][1]
        return {"query": query, "count": len(scored), "policy_id": best["policy_id"], "title": best["title"],
                "matches": [{"policy_id": p["policy_id"], "title": p["title"], "category": p["category"],
                             "score": s} for s, p in scored[:5]]}

    @mcp.tool(annotations=READ_ONLY)
    async def get_policy(
        policy_id: Annotated[str, Field(description="Policy id from search_policy, e.g. POL-001.",
                                        pattern=r"^POL-\d{3}$", max_length=7)],
    ) -> dict[str, Any]:
        """Get the full text of an HR policy document."""
        row = db.con.execute("SELECT * FROM policies WHERE policy_id = ?", (policy_id,)).fetchone()
        if row is None:
            raise NotFound(f"not found: no policy {policy_id!r}; find the id with search_policy")
        return dict(row)

    # ---- generation ---------------------------------------------------------------------------------------
    @mcp.tool(annotations=READ_ONLY)
    async def generate_report(
        report_type: Annotated[Literal[reports.REPORT_TYPES], Field(description="Which report to write.")],  # type: ignore[valid-type]
        subject: Annotated[str, Field(description="Who or what the report is about (a department or employee "
                                                  "name).", max_length=80)],
        data: FreeData,
    ) -> dict[str, Any]:
        """Write a formatted report from collected data: 'attendance' (from a department attendance table),
        'performance' (from a review list) or 'department_overview' (from a member list)."""
        text = reports.render_report(report_type, subject, data)
        return {"report_type": report_type, "subject": subject, "title": text.splitlines()[0], "report": text}

    @mcp.tool(annotations=READ_ONLY)
    async def draft_letter(
        letter_type: Annotated[Literal[reports.LETTER_TYPES], Field(description="Which letter to write.")],  # type: ignore[valid-type]
        employee_id: EmployeeId,
        user_id: UserId,
    ) -> dict[str, Any]:
        """Draft an HR letter for an employee, signed by the current user: employment verification, salary
        certificate or experience letter. Only HR may issue letters."""
        require(decide(db, user_id, "issue_letter", employee_id), f"a letter for {employee_id}")
        salary = None
        if letter_type == "salary_certificate":
            require(decide(db, user_id, "view_salary", employee_id), f"the salary of {employee_id}")
            salary = dict(db.con.execute("SELECT * FROM salaries WHERE employee_id = ?", (employee_id,)).fetchone())
        emp = views.employee(db.employee_row(employee_id), db)
        signer = views.employee(db.employee_row(db.user(user_id)["employee_id"]), db)
        letter = reports.render_letter(letter_type, emp, signer, salary, company)
        return {"letter_type": letter_type, "employee_id": employee_id, "signed_by": signer["name"], "letter": letter}

    @mcp.tool(annotations=READ_ONLY)
    async def summarize(
        template: Annotated[Literal[answers.TEMPLATE_NAMES], Field(description="The answer template of the "  # type: ignore[valid-type]
                                                                               "Routine's last step.")],
        data: FreeData,
    ) -> dict[str, Any]:
        """Write the final answer for the user from the facts collected in earlier steps, with a scenario
        template. Call it last: its answer is returned to the user as it is."""
        return {"template": template, "answer": answers.summarize(template, data)}

    logger.info("HR server ready over %s (%d tools)", db_path, 25)
    return mcp


__all__ = ["FREE_TEXT_PARAMS", "create_server"]
