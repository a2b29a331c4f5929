"""Where a distilled run chose between branches: the calls made at a point where the Routine in its prompt
allows more than one tool (the first step of each branch), with the tools it did not call.

Most calls of a record follow from the step before them; these few carry the Routine's control flow, and
``benchmarks/probe_branches.py`` measures them. The Routine is read back from the record's system prompt
(``<routines>`` ... ``</routines>``) and walked with the run-time :class:`routines.cursor.Cursor`, so a record
is judged by the Routine it was distilled with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from routines.cursor import Cursor
from routines.errors import RoutineParseError
from routines.render import parse_routine
from trainer.sharegpt import Conversation

_ROUTINES = re.compile(r"<routines>(.*?)</routines>", re.DOTALL)


@dataclass(frozen=True)
class Decision:
    call: int
    """Index of the call in the record (``Conversation.calls``)."""
    step: str
    """The step label of the branch taken (``3-1_1``)."""
    tool: str
    alternatives: tuple[str, ...]
    """The first tools of the other branches, in branch order (never ``tool``)."""


def decision_points(conv: Conversation) -> list[Decision]:
    """The record's branch choices; none when its prompt holds no Routine or several, or when its calls leave the
    Routine (a record that does not follow its Routine has no well-defined choice after that point)."""
    texts = _ROUTINES.findall(conv.system)
    if len(texts) != 1:
        return []
    try:
        routine = parse_routine(texts[0])
    except RoutineParseError:
        return []
    labels = [s.step for s in routine.steps]
    if len(set(labels)) != len(labels):  # several Routines under one tag (each with a header line)
        return []
    cursor = Cursor(routine)
    out: list[Decision] = []
    for k, call in enumerate(conv.calls):
        candidates = cursor.candidates()
        taken = next((s for s in candidates if s.tool == call.name), None)
        if taken is None:
            break
        others = tuple(dict.fromkeys(s.tool for s in candidates if s.tool and s.tool != call.name))
        if others:
            out.append(Decision(k, taken.step, call.name, others))
        cursor.advance(taken)
    return out
