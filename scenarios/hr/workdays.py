"""The company calendar of the HR scenario: a fixed "today", public holidays and working days.

Everything in the scenario is computed relative to :data:`TODAY`, never the wall clock, so that the
database, the tool outputs and the reference trajectories are the same on every machine and every day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

TODAY = date(2026, 6, 30)
"""The scenario's fixed current date."""

ATTENDANCE_MONTHS = ("2026-04", "2026-05", "2026-06")
"""Months for which daily attendance is recorded."""

HOLIDAYS: dict[date, str] = {
    date(2026, 1, 1): "New Year's Day",
    date(2026, 4, 3): "Good Friday",
    date(2026, 4, 6): "Easter Monday",
    date(2026, 5, 1): "Labour Day",
    date(2026, 5, 25): "Whit Monday",
    date(2026, 7, 3): "Company Summer Day",
    date(2026, 8, 31): "Late Summer Bank Holiday",
    date(2026, 10, 26): "Company Founders' Day",
    date(2026, 12, 24): "Christmas Eve",
    date(2026, 12, 25): "Christmas Day",
    date(2026, 12, 31): "New Year's Eve",
}

MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


def parse_date(text: str) -> date:
    """``YYYY-MM-DD`` to a date, with an error message that says what to write."""
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-07-13") from None


def parse_month(text: str) -> tuple[date, date]:
    """``YYYY-MM`` to the first and last day of that month."""
    try:
        year, month = (int(p) for p in text.strip().split("-"))
        first = date(year, month, 1)
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not a month; write it as YYYY-MM, e.g. 2026-05") from None
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def month_label(month: str) -> str:
    """``2026-05`` -> ``May 2026``."""
    first, _ = parse_month(month)
    return f"{MONTH_NAMES[first.month - 1]} {first.year}"


def days(start: date, end: date) -> Iterator[date]:
    """Every calendar day from ``start`` to ``end`` inclusive."""
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in HOLIDAYS


def working_days(start: date, end: date) -> list[date]:
    """Working days (Monday to Friday, not a company holiday) from ``start`` to ``end`` inclusive."""
    return [d for d in days(start, end) if is_working_day(d)]


def add_working_days(start: date, count: int) -> date:
    """The date ``count`` working days after ``start`` (``start`` itself counts when it is a working day)."""
    day, left = start, count
    while True:
        if is_working_day(day):
            left -= 1
            if left <= 0:
                return day
        day += timedelta(days=1)
