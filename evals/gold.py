"""Does a run match its gold trajectory? Answered by the checker (:mod:`evals.checker`), call by call.

Every "matches gold?" question goes through here: recording the evaluation's trajectories (a bound run
must reproduce its gold calls), distillation (a teacher's run is kept only if it does) and end-to-end
evaluation (the calls a model made). Gold files hold each call's arguments as the tool got them; they are
compared in the form a model writes them (an earlier result or a long value as its ``memory_*`` key,
:func:`memory.variables.calls_as_written`), so references are scored exactly, as in the per-step samples.
Recorded trajectories and training data must match exactly (their text is shown or learned as it is); an
end-to-end run is scored like a per-step sample, after the checker's normalisation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from evals.checker import check_call, normalize_text
from memory.variables import calls_as_written
from routines.backends.base import ToolSpec
from routines.calls import ToolCall
from routines.trajectory import Call


def gold_differences(record: Mapping[str, Any], calls: Sequence[Call], tools: Sequence[ToolSpec], threshold: int,
                     *, steps: bool = True, nested: bool = False) -> list[str]:
    """How a run's ``calls`` differ from the gold ``record``'s (empty when they match), exactly (see
    :func:`mismatches`). A gold file without results (so without what a model would write) is compared with
    the arguments the tools got. ``steps``: also compare the step labels (not for a flattened variant, whose
    steps are renumbered)."""
    gold = list(record.get("calls") or [])
    if all("result" in g for g in gold):
        return mismatches(written_gold(record, threshold, nested=nested), calls, tools, steps=steps, exact=True)
    as_resolved = [Call(c.step, c.tool, dict(c.resolved_arguments or {}), c.observation) for c in calls]
    return mismatches(written_gold(record, None), as_resolved, tools, steps=steps, exact=True)


def written_gold(record: Mapping[str, Any], threshold: int | None, *, nested: bool = False) -> list[Call]:
    """A gold record's calls as a model writes them (``threshold``, ``nested``: the variable memory's;
    ``None`` keeps them as the tools got them), with their step labels and free-text parameters."""
    gold = list(record.get("calls") or [])
    written = gold if threshold is None else calls_as_written(gold, threshold, nested=nested)
    return [
        Call(step=str(g.get("step", "")), tool=g["name"], arguments=dict(w["arguments"] or {}), observation="",
             free_text=free_text_of(g))
        for g, w in zip(gold, written, strict=True)
    ]


def free_text_of(gold_call: Mapping[str, Any]) -> tuple[str, ...]:
    value = gold_call.get("free_text") or ()
    if isinstance(value, Mapping):  # {"param": true}
        return tuple(k for k, v in value.items() if v)
    return tuple(value)


def mismatches(expected: Sequence[Call], made: Sequence[ToolCall | Call], tools: Sequence[ToolSpec], *,
               steps: bool = True, exact: bool = False) -> list[str]:
    """How ``made`` differs from ``expected``, one line per wrong call (empty when every call is right by
    the checker and, with ``steps``, where both have step labels, at the same step). ``exact``: the values
    must also be equal as written, without the checker's normalisation of case, spacing and number types
    (free-text parameters aside): what training data and recorded trajectories need, since their text is
    learned or shown as it is."""
    if len(made) != len(expected):
        return [f"{len(made)} calls, gold has {len(expected)}"]
    listed = {t.name for t in tools}
    problems = []
    for k, (want, got) in enumerate(zip(expected, made, strict=True)):
        call = got.call if isinstance(got, Call) else got
        if want.tool not in listed:  # the checker needs the tool's schema; a gold call of an unknown tool is wrong
            problems.append(f"call {k + 1}: gold tool {want.tool} is not among the tools")
            continue
        verdict = check_call(call.text(), want.call, tools, want.free_text)
        if not verdict.overall:
            problems.append(_clip(f"call {k + 1} ({call.name}): {verdict.detail}"))
        elif exact and (differ := _differences(call.arguments, want.arguments, want.free_text)):
            problems.append(_clip(f"call {k + 1} ({call.name}): {differ}"))
        elif steps and isinstance(got, Call) and want.step and got.step != want.step:
            problems.append(f"call {k + 1}: step {got.step}, gold step {want.step}")
    return problems


def _differences(given: Mapping[str, Any], expected: Mapping[str, Any], free_text: Sequence[str]) -> str:
    """Parameters whose values differ as written (the checker already found them equal up to normalisation)."""
    differ = [name for name, value in expected.items()
              if name not in free_text and json.dumps(given.get(name), sort_keys=True) != json.dumps(value, sort_keys=True)]
    return "; ".join(f"{name}={_clip(json.dumps(given.get(name)), 60)} is not exactly the gold "
                     f"{_clip(json.dumps(expected[name]), 60)}" for name in differ)


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def answers_match(answer: str | None, expected: str | None) -> bool:
    return answer is not None and expected is not None and normalize_text(answer) == normalize_text(expected)
