"""Template generation for the HR tools: reports, letters and comparisons. Deterministic, no model.

Report inputs arrive as whatever an earlier tool returned: the structured object, one of its fields (a
long table string or a list), or a model's free text. Each report reads what it recognises and says so
when it recognises nothing, instead of failing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from scenarios.hr.workdays import TODAY

REPORT_TYPES = ("attendance", "performance", "department_overview")
LETTER_TYPES = ("employment_verification", "salary_certificate", "experience_letter")
COMPARE_ASPECTS = ("tenure", "level", "projects", "all")

_ATT_LINE = re.compile(r"^(E\d+) (.+?) \| P(\d+) R(\d+) L(\d+) S(\d+) A(\d+) \| late (\d+)$")
_MEMBER_LINE = re.compile(r"^(E\d+) \| (.+?) \| (.+?) \| L(\d) \| (.+?) \| (.+?) \| since (\d{4}-\d{2}-\d{2})$")


def money(amount: float, currency: str = "EUR") -> str:
    return f"{currency} {amount:,.0f}"


def _field(data: Any, *keys: str) -> Any:
    """``data`` itself when it is not a dict, else the first of ``keys`` it has."""
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                return data[key]
        return None
    return data


def _text(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)


def attendance_report(subject: str, data: Any) -> str:
    table = _field(data, "table")
    rows = [m.groups() for m in map(_ATT_LINE.match, _text(table or "").splitlines()) if m]
    if not rows:
        return f"Attendance report: {subject}\nNo attendance table was recognised in the data:\n{_text(data)[:1500]}"
    totals = Counter()
    for _, _, *counts in rows:
        totals.update(dict(zip(("present", "remote", "leave", "sick", "absent", "late"), map(int, counts))))
    days = totals["present"] + totals["remote"] + totals["leave"] + totals["sick"] + totals["absent"]
    rate = 100.0 * (totals["present"] + totals["remote"]) / max(1, days)
    late = sorted(rows, key=lambda r: (-int(r[7]), r[1]))[:5]
    sick = sorted(rows, key=lambda r: (-int(r[5]), r[1]))[:5]
    absent = [r for r in rows if int(r[6]) > 0]
    lines = [
        f"Attendance report: {subject}",
        f"Prepared on {TODAY.isoformat()} for {len(rows)} people and {days} recorded person-days.",
        "",
        "Summary",
        f"- Attendance rate (present or remote): {rate:.1f}%",
        (f"- Present {totals['present']}, remote {totals['remote']}, leave {totals['leave']}, "
         f"sick {totals['sick']}, unexcused absence {totals['absent']} days; {totals['late']} late check-ins."),
        "",
        "Most late check-ins: " + (", ".join(f"{r[1]} ({r[7]})" for r in late if int(r[7]) > 0) or "none"),
        "Most sick days: " + (", ".join(f"{r[1]} ({r[5]})" for r in sick if int(r[5]) > 0) or "none"),
        "Unexcused absences to follow up: " + (", ".join(f"{r[1]} ({r[6]})" for r in absent) or "none"),
    ]
    return "\n".join(lines)


def performance_report(subject: str, data: Any) -> str:
    reviews = _field(data, "reviews")
    if not isinstance(reviews, list) or not all(isinstance(r, dict) and "rating" in r for r in reviews):
        return f"Performance report: {subject}\nNo review list was recognised in the data:\n{_text(data)[:1500]}"
    if not reviews:
        return f"Performance report: {subject}\nNo performance reviews on record (joined too recently for a rating)."
    ordered = sorted(reviews, key=lambda r: r.get("period", ""))
    ratings = [int(r["rating"]) for r in ordered]
    trend = "stable"
    if len(ratings) > 1 and ratings[-1] != ratings[0]:
        trend = "improving" if ratings[-1] > ratings[0] else "declining"
    ready = ratings[-1] >= 4 and all(r >= 3 for r in ratings[-3:-1])
    lines = [f"Performance report: {subject}", f"Prepared on {TODAY.isoformat()}.", "", "Review history"]
    lines += [f"- {r.get('period')}: {r['rating']} ({r.get('rating_label', '')}), goals met {r.get('goals_met_pct')}%"
              for r in ordered]
    lines += [
        "",
        f"Average rating {sum(ratings) / len(ratings):.1f} over {len(ratings)} review(s); trend {trend}.",
        f"Latest feedback: {ordered[-1].get('summary', '')}",
        "Promotion criteria (Promotion and Career Levels Policy, section 3): "
        + ("the rating criteria are met; time at level and business need decide the nomination."
           if ready else "the rating criteria are not met yet (a latest rating of 4 or 5 and no rating below 3 "
                         "in the two reviews before it)."),
    ]
    return "\n".join(lines)


def department_report(subject: str, data: Any) -> str:
    members = _field(data, "members")
    rows = [m.groups() for m in map(_MEMBER_LINE.match, _text(members or "").splitlines()) if m]
    if not rows:
        return f"Department overview: {subject}\nNo member list was recognised in the data:\n{_text(data)[:1500]}"
    titles = Counter(r[2] for r in rows).most_common(6)
    levels = sorted(Counter(int(r[3]) for r in rows).items())
    locations = Counter(r[5] for r in rows).most_common()
    by_hire = sorted(rows, key=lambda r: (r[6], r[1]))
    years = [(TODAY.year - int(r[6][:4])) for r in rows]
    buckets = Counter("under 2 years" if y < 2 else "2-5 years" if y < 5 else "5-10 years" if y < 10 else "10+ years"
                      for y in years)
    lines = [
        f"Department overview: {subject}",
        f"Prepared on {TODAY.isoformat()} for {len(rows)} people.",
        "",
        "Largest roles: " + ", ".join(f"{t} ({n})" for t, n in titles),
        "Levels: " + ", ".join(f"L{lv}: {n}" for lv, n in levels),
        "Locations: " + ", ".join(f"{loc} ({n})" for loc, n in locations),
        "Tenure: " + ", ".join(f"{b}: {buckets[b]}" for b in ("under 2 years", "2-5 years", "5-10 years", "10+ years")),
        "Longest serving: " + ", ".join(f"{r[1]} (since {r[6]})" for r in by_hire[:3]),
        "Newest joiners: " + ", ".join(f"{r[1]} (since {r[6]})" for r in by_hire[-3:][::-1]),
    ]
    return "\n".join(lines)


def render_report(report_type: str, subject: str, data: Any) -> str:
    builders = {"attendance": attendance_report, "performance": performance_report,
                "department_overview": department_report}
    return builders[report_type](subject, data)


def render_letter(letter_type: str, employee: dict[str, Any], signer: dict[str, Any],
                  salary: dict[str, Any] | None, company: str) -> str:
    name = employee["name"]
    opening = {
        "employment_verification": "Employment verification",
        "salary_certificate": "Salary certificate",
        "experience_letter": "Experience letter",
    }[letter_type]
    body = [
        f"{company}",
        f"Date: {TODAY.isoformat()}",
        f"Subject: {opening} for {name} ({employee['employee_id']})",
        "",
        "To whom it may concern,",
        "",
    ]
    if letter_type == "experience_letter":
        body.append(f"This letter confirms that {name} has worked for {company} since {employee['hire_date']}, "
                    f"currently as {employee['title']} (level L{employee['level']}) in {employee['department']}, "
                    f"{employee['division'] or company}. During this time {name} has contributed to the work of the "
                    f"{employee['department']} team and has the experience expected of this role and level.")
    else:
        body.append(f"We confirm that {name} has been employed by {company} since {employee['hire_date']} on a "
                    f"{employee['employment_type']} contract and currently holds the position of {employee['title']} "
                    f"in {employee['department']}, based in {employee['location']}. The employment is active.")
    if letter_type == "salary_certificate" and salary:
        body.append(f"The current gross base salary is {money(salary['base_salary'], salary['currency'])} per year, "
                    f"paid {salary['pay_frequency']}, with an annual bonus target of {salary['bonus_target_pct']}% "
                    "of base salary.")
    body += [
        "",
        "This letter is issued at the employee's request and without liability on the part of the company.",
        "",
        "Yours faithfully,",
        f"{signer['name']}",
        f"{signer['title']}, {signer['department']}",
    ]
    return "\n".join(body)


def render_comparison(a: dict[str, Any], b: dict[str, Any], aspect: str) -> str:
    rows: list[tuple[str, str, str]] = []
    if aspect in ("tenure", "all"):
        rows += [("Hire date", a["hire_date"], b["hire_date"]),
                 ("Tenure (years)", str(a["tenure_years"]), str(b["tenure_years"]))]
    if aspect in ("level", "all"):
        rows += [("Title", a["title"], b["title"]), ("Level", f"L{a['level']}", f"L{b['level']}"),
                 ("Department", a["department"], b["department"])]
    if aspect in ("projects", "all"):
        rows += [("Projects", str(len(a["projects"])), str(len(b["projects"]))),
                 ("Active projects", ", ".join(a["projects"]) or "none", ", ".join(b["projects"]) or "none")]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}} | {a['name']} | {b['name']}"] + [f"{k:{width}} | {x} | {y}" for k, x, y in rows]
    return "\n".join(lines)
