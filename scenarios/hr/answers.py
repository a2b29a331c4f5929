"""The scenario's summarisation templates: the ``summarize`` tool turns collected observations into the answer.

Every Routine ends with ``summarize(template, data)``. ``data`` is an object of earlier tool outputs under
agreed keys (see each template) when a Routine binds it, or whatever a model passes. A template that finds
nothing it knows falls back to listing the facts, so the tool always answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from scenarios.hr.reports import money
from scenarios.hr.workdays import month_label

logger = logging.getLogger(__name__)


def _get(data: Any, *path: str | int, default: Any = None) -> Any:
    for key in path:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_dict or in_list):
            return default
        data = data[key]
    return data


def _names(items: list[dict[str, Any]] | None, limit: int = 4) -> str:
    return ", ".join(f"{i.get('name')} ({i.get('title')})" for i in (items or [])[:limit])


def salary(d: dict[str, Any]) -> str:
    s, b = d["salary"], d.get("band") or {}
    you = _get(d, "requester", "employee_id") == s["employee_id"]
    who = "You earn" if you else f"{s['name']} ({s['title']}, L{s['level']}) earns"
    text = (f"{who} a base salary of {money(s['base_salary'], s['currency'])} a year, paid {s['pay_frequency']}, with "
            f"a bonus target of {s['bonus_target_pct']}%. The last change was {s['last_change_pct']:+.1f}% on "
            f"{s['last_change_date']}.")
    if b:
        ratio = round(100 * s["base_salary"] / b["band_mid"])
        text += (f" The salary band {b['band_id']} runs from {money(b['band_min'])} to {money(b['band_max'])} "
                 f"(midpoint {money(b['band_mid'])}); the salary is at {ratio}% of the midpoint.")
    return text


def salary_band(d: dict[str, Any]) -> str:
    b = d["band"]
    reason = _get(d, "permission", "reason", default="individual salaries are visible to HR only")
    return (f"You may not see {b['name']}'s individual salary ({reason}). The salary band for {b['title']} "
            f"(level L{b['level']}, band {b['band_id']}) runs from {money(b['band_min'])} to {money(b['band_max'])}, "
            f"with a midpoint of {money(b['band_mid'])}. For the exact salary, {b['name']} or HR can help.")


def employee_profile(d: dict[str, Any]) -> str:
    e = d["employee"]
    chain = _get(d, "managers", "chain", default=[])
    projects = [p for p in _get(d, "projects", "projects", default=[]) if p.get("status") == "active"]
    text = (f"{e['name']} ({e['employee_id']}) is a {e['title']} (level L{e['level']}) in {e['department']}"
            f"{', ' + e['division'] if e.get('division') else ''}, based in {e['location']}, and joined on "
            f"{e['hire_date']} ({e['tenure_years']} years ago).")
    if chain:
        text += f" Reports to {_names(chain[:1])}; the line above continues with {_names(chain[1:]) or 'nobody'}."
    team = d.get("team") or {}
    if team:
        text += f" {team['department']} has {team['headcount']} people and is managed by {team['manager_name']}."
    text += (" Active projects: " + ", ".join(f"{p['name']} ({p['role']}, {p['allocation_pct']}%)" for p in projects)
             + "." if projects else " No active projects.")
    return text


def leave_check(d: dict[str, Any]) -> str:
    kind = str(d.get("leave_type") or "annual").lower()
    name = _get(d, "balance", "name") or _get(d, "employee", "name")
    bal = next((b for b in _get(d, "balance", "balances", default=[]) if b["leave_type"] == kind), None)
    period = d.get("period") or {}
    pending = _get(d, "pending", "requests", default=[])
    if bal is None:
        raise KeyError("balance")
    need = period.get("working_days", 0)
    remaining, waiting = bal["remaining"], sum(r["days"] for r in pending if r.get("leave_type") == kind)
    text = (f"{name} has {remaining:g} days of {kind} leave left for {_get(d, 'balance', 'year', default=2026)} "
            f"({bal['entitlement']:g} entitlement + {bal['carried_over']:g} carried over, {bal['used']:g} used, "
            f"{bal['scheduled']:g} already scheduled), and {waiting:g} more days of {kind} leave are pending approval.")
    if period:
        holidays = ", ".join(f"{h['name']} on {h['date']}" for h in period.get("holidays", []))
        text += (f" The period {period['start_date']} to {period['end_date']} has {need} working days"
                 f"{' (excluding ' + holidays + ')' if holidays else ''}.")
        if need <= remaining - waiting:
            text += f" That fits: {remaining - waiting - need:g} days would be left after it and the pending requests."
        elif need <= remaining:
            text += " That fits the balance only if some of the pending requests are withdrawn or declined."
        else:
            text += (f" That is {need - remaining:g} days more than the remaining balance; the rest would have to be "
                     "another leave type or unpaid leave.")
    if pending:
        text += " Pending requests: " + ", ".join(
            f"{r['request_id']} ({r['leave_type']}, {r['start_date']} to {r['end_date']}, {r['days']:g} days)"
            for r in pending[:5]) + "."
    return text


def leave_policy(d: dict[str, Any]) -> str:
    p = d["policy"]
    name = _get(d, "employee", "name", default="this employee")
    reason = _get(d, "permission", "reason", default="leave records are visible to the employee, managers and HR")
    sections = [s.strip() for s in p["text"].split("## ") if s.strip()]
    excerpt = "\n".join(": ".join(part.strip() for part in s.split("\n", 1)) for s in sections[2:4])
    return (f"You may not see {name}'s leave balance or requests ({reason}). Here is what the {p['title']} "
            f"({p['policy_id']}, version {p['version']}) says:\n{excerpt}\n{name} or their manager can check the "
            "balance in the HR portal.")


def attendance_report(d: dict[str, Any]) -> str:
    a = d["attendance"]
    t = a["totals"]
    text = (f"Attendance of {a['department']} in {month_label(a['month'])}: {a['headcount']} people over "
            f"{a['working_days']} working days, attendance rate {a['attendance_rate']}% (present {t['present']}, "
            f"remote {t['remote']}, leave {t['leave']}, sick {t['sick']}, unexcused absence {t['absent']} days; "
            f"{t['late']} late check-ins).")
    stats = d.get("stats") or {}
    if stats:
        text += (f" Today {stats['on_leave_today']} people are on leave or sick and {stats['pending_leave_requests']} "
                 "leave requests are pending.")
    report = _get(d, "report", "report")
    return text + ("\n\n" + report if report else "")


def attendance_denied(d: dict[str, Any]) -> str:
    s = d["stats"]
    reason = _get(d, "permission", "reason", default="attendance is visible to the department's managers and HR")
    chain = _get(d, "managers", "chain", default=[])
    text = (f"You may not see the attendance of {s['department']} ({reason}). What I can tell you: {s['department']} "
            f"has {s['headcount']} people, {s['on_leave_today']} on leave or sick today and "
            f"{s['pending_leave_requests']} leave requests pending. Its attendance reports are available to its "
            f"manager {s['manager_name']} and to HR")
    return text + (f"; above {s['manager_name']} the reporting line is {_names(chain)}." if chain else ".")


def performance_review(d: dict[str, Any]) -> str:
    e, r = d["employee"], d["reviews"]
    text = f"{e['name']} ({e['title']}, L{e['level']}, {e['department']}) "
    if not r.get("reviews"):
        text += "has no performance reviews on record yet."
    else:
        last = r["reviews"][0]
        text += (f"has {r['count']} review(s) on record; the latest, {last['period']}, is {last['rating']} "
                 f"({last['rating_label']}), and the average is {r['average_rating']}.")
    projects = [p for p in _get(d, "projects", "projects", default=[]) if p.get("status") == "active"]
    text += f" Active projects: {', '.join(p['name'] for p in projects)}." if projects else " No active projects."
    report = _get(d, "report", "report")
    return text + ("\n\n" + report if report else "")


def department_overview(d: dict[str, Any]) -> str:
    s = d["stats"]
    chain = _get(d, "managers", "chain", default=[])
    levels = ", ".join(f"{k}: {v}" for k, v in s["levels"].items())
    text = (f"{s['department']} ({s['kind']}{', part of ' + s['parent'] if s.get('parent') else ''}) has "
            f"{s['headcount']} people in {s['subunits']} sub-unit(s), led by {s['manager_name']}"
            f"{', who reports to ' + _names(chain[:1]) if chain else ''}. Average tenure is "
            f"{s['average_tenure_years']} years; levels {levels}; {s['active_projects']} active projects; "
            f"{s['pending_leave_requests']} leave requests pending.")
    if isinstance(d.get("org"), str):
        text += f" Place in the organisation: {d['org']}."
    report = _get(d, "report", "report")
    return text + ("\n\n" + report if report else "")


def employment_letter(d: dict[str, Any]) -> str:
    letter = d["letter"]
    kind = letter["letter_type"].replace("_", " ")
    return f"Here is the {kind} for {_get(d, 'employee', 'name')}, signed by {letter['signed_by']}:\n\n{letter['letter']}"


def general(data: Any) -> str:
    if isinstance(data, str):
        return data.strip() or "I found nothing to report."
    if isinstance(data, dict):
        parts = [f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in data.items()]
        return "Here is what I found:\n" + "\n".join(p[:600] for p in parts)
    return "Here is what I found: " + json.dumps(data, ensure_ascii=False)[:3000]


TEMPLATES: dict[str, Callable[[dict[str, Any]], str]] = {
    "salary": salary, "salary_band": salary_band, "employee_profile": employee_profile, "leave_check": leave_check,
    "leave_policy": leave_policy, "attendance_report": attendance_report, "attendance_denied": attendance_denied,
    "performance_review": performance_review, "department_overview": department_overview,
    "employment_letter": employment_letter,
}
TEMPLATE_NAMES: tuple[str, ...] = (*TEMPLATES, "general")


def summarize(template: str, data: Any) -> str:
    """The user-facing answer. Falls back to :func:`general` when ``data`` lacks what the template needs."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            return general(data)
    build = TEMPLATES.get(template)
    if build is None or not isinstance(data, dict):
        return general(data)
    try:
        return build(data)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        logger.info("summarize template %r fell back to a plain listing: %s", template, exc)
        return general(data)
