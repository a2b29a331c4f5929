"""Who may see what: the access rules the HR tools enforce (policies POL-008 and POL-014).

- Directory data (names, titles, departments, reporting lines, projects, salary bands) is open to everyone.
- Everyone may see their own records.
- ``hr`` sees leave, attendance and reviews of everyone, salaries below level L8, and issues letters.
- ``hr_admin`` sees everything, executive pay included.
- ``manager`` sees leave, attendance and reviews of people in their reporting line (not salaries), approves
  their leave, and sees attendance of the units they manage.
- ``employee`` sees nothing beyond their own records and the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastmcp.exceptions import ToolError

from scenarios.hr.repository import HRData

Action = Literal["view_salary", "view_leave", "view_attendance", "view_review", "approve_leave", "issue_letter"]
ACTIONS: tuple[str, ...] = ("view_salary", "view_leave", "view_attendance", "view_review", "approve_leave",
                            "issue_letter")
HR_ROLES = ("hr", "hr_admin")
EXECUTIVE_LEVEL = 8
_WHAT = {"view_salary": "the salary", "view_leave": "the leave records", "view_attendance": "the attendance records",
         "view_review": "the performance reviews", "approve_leave": "leave requests", "issue_letter": "letters"}


class PermissionDenied(ToolError):
    """A data tool was asked for something the current user may not see."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def decide(data: HRData, user_id: str, action: str, employee_id: str) -> Decision:
    """May ``user_id`` do ``action`` on ``employee_id``?"""
    if action not in ACTIONS:
        raise ToolError(f"unknown action {action!r}; use one of: {', '.join(ACTIONS)}")
    user = data.user(user_id)
    target = data.employee_row(employee_id)
    role, name = user["role"], target["full_name"]
    what = _WHAT[action]
    if user["employee_id"] == employee_id:
        if action == "approve_leave":
            return Decision(False, "nobody can approve their own leave; the direct manager approves it")
        if action == "issue_letter" and role not in HR_ROLES:
            return Decision(False, "letters are issued by HR; ask HR Services for your letter")
        return Decision(True, f"{name} is the current user; everyone may see their own records")
    if role == "hr_admin":
        return Decision(True, "HR administrators may see and do everything in the HR system")
    if role == "hr":
        if action == "view_salary" and target["level"] >= EXECUTIVE_LEVEL:
            return Decision(False, f"{name} is an executive (level L{target['level']}); executive pay is visible to "
                                   "HR administrators only")
        if action == "approve_leave":
            return Decision(False, f"leave is approved by {name}'s manager, not by HR")
        return Decision(True, f"HR staff may see {what} of all employees")
    in_line = user["employee_id"] in {row["employee_id"] for row in data.manager_chain(employee_id)}
    if role == "manager" and in_line:
        if action == "view_salary":
            return Decision(False, f"managers see salary bands, not individual salaries; {name}'s salary is "
                                   "visible to HR and to the employee")
        if action == "issue_letter":
            return Decision(False, "letters are issued by HR, not by managers")
        return Decision(True, f"{name} is in the current user's reporting line")
    if role == "manager":
        return Decision(False, f"{name} is not in the current user's reporting line; only their managers and HR "
                               f"may see {what}")
    return Decision(False, f"employees may see only their own records; {what} of {name} are visible to their "
                           "managers and HR")


def department_access(data: HRData, user_id: str, department_id: str) -> Decision:
    """May ``user_id`` see the detailed (attendance) data of a whole department?"""
    user = data.user(user_id)
    unit = data.unit(department_id)
    if user["role"] in HR_ROLES:
        return Decision(True, f"HR staff may see the attendance of every department, including {unit['name']}")
    managed = data.managed_unit(user["employee_id"])
    if managed is not None and department_id in data.subtree_ids(managed["department_id"]):
        if managed["department_id"] == department_id:
            return Decision(True, f"the current user manages {unit['name']}")
        return Decision(True, f"{unit['name']} is part of {managed['name']}, which the current user manages")
    return Decision(False, f"department attendance of {unit['name']} is visible only to its managers and HR")


def require(decision: Decision, what: str) -> None:
    """Raise :class:`PermissionDenied` (a ``ToolError``) when the decision denies."""
    if not decision.allowed:
        raise PermissionDenied(f"permission denied: the current user may not see {what}: {decision.reason}")
