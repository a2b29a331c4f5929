"""Dates written in a question, as the ISO values a Routine's inputs ask for.

A small model reads "from 25 August to 28 August" badly as ``2026-08-25`` (it copies digits in the wrong
order, or invents a day), while choosing between candidates it reads well. :func:`question_dates` finds the
dates and months a question writes (``2026-07-27``, ``25 August``, ``September 1st, 2026``, ``June``,
``May 2026``) and writes them as ``YYYY-MM-DD`` and ``YYYY-MM``; input extraction offers them as the only
values of a date input (``routines.inputs``). A date written without a year takes the reference date's year.
"""

from __future__ import annotations

import re
from datetime import date

MONTHS = {name: i for i, names in enumerate((
    ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
    ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
    ("november", "nov"), ("december", "dec")), start=1) for name in names}

_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?[0-9])(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)[0-9]{2})"
_PATTERNS = [
    re.compile(r"\b(?P<iso>(?:19|20)[0-9]{2}-[01][0-9](?:-[0-3][0-9])?)\b"),
    re.compile(rf"\b{_DAY}(?:\s+of)?\s+{_MONTH}(?:,?\s+{_YEAR})?\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH}\s+{_DAY}(?!\s*[0-9:])(?:,?\s+{_YEAR})?\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH}(?:\s+{_YEAR})?\b", re.IGNORECASE),
]


def question_dates(text: str, today: date | None = None) -> tuple[list[str], list[str]]:
    """The days (``YYYY-MM-DD``) and months (``YYYY-MM``) ``text`` writes, in order of appearance, without
    repeats; a day's month counts as a month too. Days and months without a year take ``today``'s year
    (default: the clock's)."""
    year_now = (today or date.today()).year
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue  # part of a longer date already read ("25 August" is not also "August")
            value = _iso(m, year_now)
            taken.append((m.start(), m.end()))  # read even when it is no date: "31 June" is not June either
            if value:
                found.append((m.start(), value))
    found.sort()
    days = list(dict.fromkeys(v for _, v in found if len(v) == 10))
    months = list(dict.fromkeys(v[:7] for _, v in found))
    return days, months


def _iso(m: re.Match[str], year_now: int) -> str | None:
    groups = m.groupdict()
    if groups.get("iso"):
        return groups["iso"] if _valid(groups["iso"]) else None
    word = groups["month"].lower().rstrip(".")
    if word == "may" and not groups.get("day") and not groups.get("year") and _is_verb(m):
        return None  # "may I ...", "they may take": the verb, not the month
    month = MONTHS[word]
    year = int(groups["year"]) if groups.get("year") else year_now
    if groups.get("day"):
        value = f"{year:04d}-{month:02d}-{int(groups['day']):02d}"
        return value if _valid(value) else None
    return f"{year:04d}-{month:02d}"


def _is_verb(m: re.Match[str]) -> bool:
    """``May`` with a capital inside a sentence names the month; lower-case, or first in the sentence
    and followed by a word, it is the verb."""
    written = m.group("month")
    start = m.start()
    first = start == 0 or m.string[:start].rstrip()[-1:] in ".?!"
    return written.islower() or (first and re.match(r"\s+[A-Za-z]", m.string[m.end():]) is not None)


def _valid(value: str) -> bool:
    try:
        date.fromisoformat(value if len(value) == 10 else value + "-01")
    except ValueError:
        return False
    return True
