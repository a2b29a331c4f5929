"""Generating the company's records: leave requests and balances, attendance, reviews and projects.

Leave comes first because attendance shows approved leave and sickness on the right days, and balances are
the sums of the requests. All dates are relative to the fixed ``TODAY``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from scenarios.hr.people import Company, Person
from scenarios.hr.workdays import ATTENDANCE_MONTHS, TODAY, parse_month, working_days

YEAR_START = date(2026, 1, 5)
PLAN_END = date(2026, 9, 30)
REMOTE_SHARE = {
    "software": 0.45, "sre": 0.4, "data": 0.4, "qa": 0.4, "design": 0.45, "operations": 0.1, "manufacturing": 0.0,
    "logistics": 0.05, "support": 0.15, "sales": 0.3, "marketing": 0.4, "finance": 0.35, "hr": 0.35, "legal": 0.35,
    "it": 0.2, "security": 0.3, "communications": 0.4, "facilities": 0.02, "strategy": 0.3,
}
REVIEW_PERIODS = (("2024-H2", date(2024, 12, 31)), ("2025-H1", date(2025, 6, 30)), ("2025-H2", date(2025, 12, 31)))
RATING_LABEL = {1: "Does not meet expectations", 2: "Partially meets expectations", 3: "Meets expectations",
                4: "Exceeds expectations", 5: "Exceptional"}
_STRENGTHS = (
    "reliable delivery of commitments", "clear communication with stakeholders", "strong technical depth",
    "helpful mentoring of newer colleagues", "careful attention to quality", "good customer focus",
    "initiative in improving team processes", "calm handling of incidents", "solid planning and prioritisation",
    "constructive collaboration across teams",
)
_GROWTH = (
    "delegating more", "documenting decisions", "speaking up earlier about risks", "estimating work more accurately",
    "broadening knowledge of adjacent systems", "presenting results to senior audiences", "time management",
    "following through on action items", "coaching others", "strategic thinking beyond the current quarter",
)
_CODENAMES = (
    "Atlas", "Beacon", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper", "Keystone",
    "Lumen", "Meridian", "Nimbus", "Orion", "Pioneer", "Quartz", "Redwood", "Summit", "Tidal", "Unity", "Vector",
    "Willow", "Zenith", "Aurora", "Boreal", "Cascade", "Drift", "Everest", "Fjord", "Glacier", "Horizon",
    "Ivory", "Jade", "Kestrel", "Lantern", "Mosaic", "Nova", "Onyx", "Prism", "Quest", "Ridge", "Sierra", "Torrent",
    "Upland", "Vanguard", "Waypoint", "Yarrow",
)
_PROJECT_KINDS = {
    "software": ("Platform Rebuild", "Checkout Redesign", "API Gateway", "Mobile Release", "Search Revamp"),
    "sales": ("Territory Plan", "Partner Launch", "Pricing Review", "Key Account Program", "CRM Cleanup"),
    "finance": ("Close Automation", "Budget Model", "Audit Readiness", "ERP Upgrade", "Cash Forecast"),
    "hr": ("Onboarding Revamp", "HRIS Migration", "Engagement Survey", "Leadership Academy", "Pay Equity Review"),
    "operations": ("Line Automation", "Warehouse Layout", "Supplier Consolidation", "Support Tooling", "Lean Program"),
    "legal": ("Contract Repository", "Privacy Program", "Laptop Refresh", "Zero Trust Rollout", "Intranet Relaunch"),
}


@dataclass
class LeaveState:
    """Per-employee leave while generating: which days are taken and the request rows."""

    requests: list[tuple] = field(default_factory=list)
    day_status: dict[tuple[str, date], str] = field(default_factory=dict)
    totals: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (emp, type, bucket) -> days


def _annual_entitlement(p: Person) -> float:
    years = (TODAY - p.hire_date).days / 365.25
    full = 25 + min(5, int(years // 5))
    if p.hire_date.year == 2026:
        return round(full * (12 - p.hire_date.month + 1) / 12 * 2) / 2
    return float(full)


def generate_leave(company: Company, rng: random.Random) -> tuple[list[tuple], list[tuple], dict[tuple[str, date], str]]:
    """Leave requests and 2026 balances; also the per-day leave/sick map used by attendance."""
    state = LeaveState()
    calendar = working_days(YEAR_START, PLAN_END)
    carry: dict[str, float] = {}
    for p in company.people:
        start_from = max(YEAR_START, p.hire_date + timedelta(days=7))
        days_ok = [d for d in calendar if d >= start_from]
        if len(days_ok) < 15:
            continue
        budget = _annual_entitlement(p) + (carry.setdefault(p.employee_id, float(rng.randint(0, 5)))
                                           if p.hire_date.year < 2025 else 0.0)
        plan = [("annual", rng.randint(1, 10)) for _ in range(rng.randint(1, 4))]
        plan += [("personal", 1) for _ in range(rng.choice((0, 0, 1, 1, 2)))]
        plan += [("sick", rng.randint(1, 4)) for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3)))]
        if rng.random() < 0.012:
            plan.append(("parental", rng.choice((20, 30, 40, 60))))
        for kind, length in plan:
            if kind == "annual" and length > budget:
                continue
            idx = rng.randrange(0, len(days_ok) - length)
            span = days_ok[idx: idx + length]
            if kind == "sick" and span[-1] >= TODAY:
                continue
            if any((p.employee_id, d) in state.day_status for d in span):
                continue
            _add_request(state, p, kind, span, rng)
            if kind == "annual":
                budget -= length
    balances = []
    for p in company.people:
        entitlement = {"annual": _annual_entitlement(p), "sick": 10.0, "personal": 3.0}
        for kind, ent in entitlement.items():
            used, scheduled, pending = (state.totals.get((p.employee_id, kind, b), 0.0)
                                        for b in ("used", "scheduled", "pending"))
            carried = carry.get(p.employee_id, 0.0) if kind == "annual" else 0.0
            balances.append((p.employee_id, 2026, kind, ent, carried, used, scheduled, pending))
    return state.requests, balances, state.day_status


def _add_request(state: LeaveState, p: Person, kind: str, span: list[date], rng: random.Random) -> None:
    start, end = span[0], span[-1]
    past = start < TODAY
    if kind == "sick":
        status = "approved"
    elif past:
        status = rng.choices(("approved", "rejected", "cancelled"), (92, 4, 4))[0]
    else:
        status = rng.choices(("pending", "approved", "rejected"), (45, 50, 5))[0]
    submitted = min(TODAY, start - timedelta(days=rng.randint(3, 30))) if kind != "sick" else start
    decided = None if status == "pending" else min(TODAY, submitted + timedelta(days=rng.randint(0, 4)))
    comment = {"rejected": "Overlaps with team commitments; please propose other dates.",
               "cancelled": "Cancelled by the employee."}.get(status, "")
    request_id = f"LR-{len(state.requests) + 100001}"
    state.requests.append((request_id, p.employee_id, kind, start.isoformat(), end.isoformat(), float(len(span)),
                           status, submitted.isoformat(), p.manager_id, decided.isoformat() if decided else None, comment))
    if status in ("approved", "pending"):
        for d in span:
            state.day_status[(p.employee_id, d)] = ("sick" if kind == "sick" else "leave") if status == "approved" else "pending"
    bucket = "pending" if status == "pending" else ("used" if end < TODAY else "scheduled") if status == "approved" else None
    if bucket:
        key = (p.employee_id, kind, bucket)
        state.totals[key] = state.totals.get(key, 0.0) + len(span)


def generate_attendance(company: Company, leave_days: dict[tuple[str, date], str], rng: random.Random) -> list[tuple]:
    """One row per employee per working day of the attendance months (from their hire date)."""
    first, _ = parse_month(ATTENDANCE_MONTHS[0])
    _, last = parse_month(ATTENDANCE_MONTHS[-1])
    calendar = [(d, d.isoformat()) for d in working_days(first, last)]
    rows: list[tuple] = []
    append = rows.append
    rand = rng.random
    for p in company.people:
        remote = REMOTE_SHARE[p.family] * (0.5 if p.employment_type == "part-time" else 1.0)
        late_rate = 0.3 if rand() < 0.08 else 0.03
        base_in = 450 + int(rand() * 60)  # habitual arrival between 07:30 and 08:30
        emp = p.employee_id
        for day, iso in calendar:
            if day < p.hire_date:
                continue
            marked = leave_days.get((emp, day))
            if marked in ("leave", "sick"):
                append((emp, iso, marked, None, None))
                continue
            r = rand()
            if r < 0.003:
                append((emp, iso, "absent", None, None))
                continue
            check_in = base_in + int(rand() * 45) + (int(60 + rand() * 60) if rand() < late_rate else 0)
            check_out = check_in + 480 + int(rand() * 80)
            status = "remote" if r < 0.003 + remote else "present"
            append((emp, iso, status, f"{check_in // 60:02d}:{check_in % 60:02d}",
                    f"{check_out // 60:02d}:{check_out % 60:02d}"))
    return rows


def generate_reviews(company: Company, rng: random.Random) -> list[tuple]:
    rows = []
    for p in company.people:
        if p.manager_id is None:
            continue
        mean = rng.choices((1.6, 2.4, 3.0, 3.5, 4.1, 4.6), (2, 8, 38, 30, 17, 5))[0]
        for period, end in REVIEW_PERIODS:
            if p.hire_date > end - timedelta(days=90):
                continue
            rating = min(5, max(1, round(mean + rng.gauss(0, 0.55))))
            goals = min(100, max(20, 40 + rating * 12 + rng.randint(-8, 8)))
            strength = rng.choice(_STRENGTHS)
            growth = rng.choice(_GROWTH)
            summary = (f"{RATING_LABEL[rating]}. Strengths: {strength}. "
                       f"Focus for next period: {growth}. Goals met: {goals}%.")
            rows.append((f"PR-{len(rows) + 200001}", p.employee_id, period, rating, goals, p.manager_id, summary, 1))
    return rows


def generate_projects(company: Company, rng: random.Random) -> tuple[list[tuple], list[tuple]]:
    """Projects owned by divisions, staffed mostly from one department of that division."""
    divisions = [u for u in company.units if u.kind == "division"]
    by_unit: dict[str, list[Person]] = {}
    for p in company.people:
        by_unit.setdefault(p.department_id, []).append(p)
    projects, members = [], []
    used_names: set[str] = set()
    for division in divisions:
        departments = [u for u in company.units if u.parent_id == division.department_id]
        staff = [p for dep in departments for team in [dep, *[u for u in company.units if u.parent_id == dep.department_id]]
                 for p in by_unit.get(team.department_id, [])]
        kinds = _PROJECT_KINDS.get(division.family, _PROJECT_KINDS["operations"])
        for _ in range(max(12, len(staff) // 16)):
            name = f"{rng.choice(_CODENAMES)} {rng.choice(kinds)}"
            if name in used_names:
                name = f"{name} {sum(1 for n in used_names if n.startswith(name)) + 1}"
            used_names.add(name)
            pid = f"PRJ-{len(projects) + 1:04d}"
            status = rng.choices(("active", "completed", "planned"), (60, 25, 15))[0]
            start = {"active": TODAY - timedelta(days=rng.randint(30, 400)),
                     "completed": TODAY - timedelta(days=rng.randint(200, 700)),
                     "planned": TODAY + timedelta(days=rng.randint(10, 120))}[status]
            end = start + timedelta(days=rng.randint(90, 420))
            home = rng.choice(departments)
            pool = [p for team in [home, *[u for u in company.units if u.parent_id == home.department_id]]
                    for p in by_unit.get(team.department_id, [])]
            team_size = min(len(pool), rng.randint(4, 16))
            chosen = rng.sample(pool, team_size)
            leads = [p for p in chosen if p.level >= 4] or chosen
            lead = leads[0]
            projects.append((pid, name, division.department_id, status, start.isoformat(), end.isoformat(),
                             lead.employee_id, rng.randint(5, 120) * 10000,
                             f"{name}: a {division.name} initiative run by {home.name}."))
            for p in chosen:
                role = "Lead" if p is lead else rng.choices(("Contributor", "Reviewer", "Advisor"), (80, 12, 8))[0]
                members.append((pid, p.employee_id, role, 100 if p is lead and rng.random() < 0.3
                                else rng.choice((10, 20, 20, 30, 40, 50, 50, 60, 80, 100))))
    return projects, members
