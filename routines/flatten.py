"""Flattening a branching Routine into its unbranched variants (the paper turns 7 Routines into 10).

Each variant takes one branch at every branch point; its main steps are renumbered 1..n, branch nodes
become nodes, ``when`` is dropped, and ``{{steps.<label>...}}`` references in ``args`` are rewritten to the
new numbers. A variant's id is ``<routine id>/<branch>`` (``hr.salary/3-1``; ``+`` joins several branch
points, ``hr.x/3-1+5-2``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

from routines.model import Label, Routine, Step

_STEP_REF = re.compile(r"(\{\{\s*steps\.)([\w\-]+)")


def _rewrite(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _STEP_REF.sub(lambda m: m.group(1) + mapping.get(m.group(2), m.group(2)), value)
    if isinstance(value, dict):
        return {k: _rewrite(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, mapping) for v in value]
    return value


def branch_points(routine: Routine) -> list[int]:
    """Main step numbers that have branches, in order."""
    return sorted({s.label.main for s in routine.steps if s.label.is_branch})


def variant_id(routine: Routine, choice: dict[int, int]) -> str:
    base = routine.id or routine.name or "routine"
    if not choice:
        return base
    return base + "/" + "+".join(f"{main}-{branch}" for main, branch in sorted(choice.items()))


def taken_variant(routine: Routine, steps: Iterable[str]) -> str:
    """The variant id of the path a run took, from the labels of the steps it made (``3-2_1`` took branch
    2 of step 3)."""
    choice: dict[int, int] = {}
    for text in steps:
        label = Label.parse(text)
        if label.is_branch:
            choice[label.main] = label.branch
    return variant_id(routine, choice)


def linearize(routine: Routine, choice: dict[int, int]) -> Routine:
    """The variant of ``routine`` taking branch ``choice[x]`` at every branch point x."""
    picked: list[Step] = []
    names: list[str] = []
    aliases: dict[str, str] = {}
    for step in routine.main_steps():
        main = step.label.main
        branches = routine.branches(main)
        if branches:
            if choice.get(main) not in branches:
                raise ValueError(
                    f"choose a branch of step {main}: one of {sorted(branches)}, not {choice.get(main)!r}"
                )
            chosen = branches[choice[main]]
            ends = [i for i, s in enumerate(chosen) if s.type == "finish"]
            chosen = chosen[: ends[0] + 1] if ends else chosen  # nothing after a finish runs
            picked.extend(chosen)
            names.append(chosen[0].name)
            aliases[str(main)] = chosen[-1].step  # {{steps.x}}: the output of the branch that ran
            if ends:
                break
            continue
        picked.append(step)
        if step.type == "finish":
            break
    mapping = {s.step: str(i) for i, s in enumerate(picked, start=1)}
    mapping.update({main: mapping[last] for main, last in aliases.items()})
    steps = [
        s.model_copy(
            update={
                "step": mapping[s.step],
                "type": "node" if s.type == "branchnode" else s.type,
                "when": None,
                "args": _rewrite(s.args, mapping) if s.args is not None else None,
            }
        )
        for s in picked
    ]
    name = routine.name if not names else f"{routine.name} - {' / '.join(names)}"
    update = {"id": variant_id(routine, choice), "name": name, "steps": steps}
    return routine.model_copy(update=update, deep=True)


def flatten(routine: Routine) -> list[Routine]:
    """All unbranched variants of ``routine`` (just ``[routine]`` when it has no branches)."""
    points = branch_points(routine)
    if not points:
        return [routine]
    options = [sorted(routine.branches(p)) for p in points]
    return [linearize(routine, dict(zip(points, combo))) for combo in itertools.product(*options)]
