"""An independent second engine, kept as a check on the first: it executes a fully bound HR Routine against a
live tool server with a plain fastmcp Client, without the executor, its cursor or its variable memory.

It walks the (branching) Routine as written: main steps in order; at a branch step it takes the first branch
whose ``when`` holds (a branch without ``when`` is the "otherwise"), and afterwards ``{{steps.<x>}}`` names
the output of the last step of the branch that ran. It stops after a finish step. The gold files are written
by the executor in bound mode (``scenarios.hr.gold``); tests assert this runner reproduces them, so a bug in
the executor's branch choice or bindings cannot silently become gold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fastmcp

from routines.bindings import RunState, evaluate_when, resolve_args
from routines.flatten import variant_id
from routines.model import Routine, Step
from scenarios.hr.server import FREE_TEXT_PARAMS


class ReferenceRunError(RuntimeError):
    """A bound step failed or could not be resolved. Names the step, the tool and what happened."""


@dataclass
class Trajectory:
    routine_id: str
    variant: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "calls": self.calls, "answer": self.answer}


def _result_object(result: Any) -> Any:
    if result.structured_content is not None:
        return result.structured_content
    text = "".join(getattr(c, "text", "") for c in result.content or [])
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def _call(client: fastmcp.Client, step: Step, state: RunState, routine: Routine,
                free_text: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    if not step.tool or step.args is None:
        raise ReferenceRunError(f"{routine.id} step {step.step} is not bound (it needs 'tool' and 'args')")
    try:
        arguments = resolve_args(step.args, state)
    except ValueError as exc:
        raise ReferenceRunError(f"{routine.id} step {step.step}: {exc}") from exc
    result = await client.call_tool(step.tool, arguments, raise_on_error=False)
    if result.is_error:
        text = "".join(getattr(c, "text", "") for c in result.content or [])
        raise ReferenceRunError(f"{routine.id} step {step.step}: {step.tool} failed: {text}")
    output = _result_object(result)
    state.steps[step.step] = output
    return {"step": step.step, "name": step.tool, "arguments": arguments, "result": output,
            "free_text": [p for p in free_text.get(step.tool, ()) if p in arguments]}


def choose_branch(routine: Routine, main: int, state: RunState) -> int:
    """The first branch of step ``main`` whose ``when`` holds; a branch without ``when`` always holds."""
    branches = routine.branches(main)
    for number in sorted(branches):
        first = branches[number][0]
        if first.when is None or evaluate_when(first.when, state):
            return number
    raise ReferenceRunError(f"{routine.id} step {main}: no branch condition holds and no branch is the default")


async def run_reference(client: fastmcp.Client, routine: Routine, inputs: dict[str, Any], user_id: str,
                        free_text: Mapping[str, tuple[str, ...]] | None = None) -> Trajectory:
    """Run ``routine`` with ``inputs`` as user ``user_id`` through ``client`` (an open fastmcp Client)."""
    free = FREE_TEXT_PARAMS if free_text is None else free_text
    state = RunState(inputs=dict(inputs), system={"user_id": user_id})
    choice: dict[int, int] = {}
    calls: list[dict[str, Any]] = []
    finished = False
    for step in routine.main_steps():
        if step.type == "branch":
            main = step.label.main
            number = choose_branch(routine, main, state)
            choice[main] = number
            chosen = routine.branches(main)[number]
            for branch_step in chosen:
                calls.append(await _call(client, branch_step, state, routine, free))
            state.steps[str(main)] = state.steps[chosen[-1].step]
            finished = chosen[-1].type == "finish"
        else:
            calls.append(await _call(client, step, state, routine, free))
            finished = step.type == "finish"
        if finished:
            break
    if not finished:
        raise ReferenceRunError(f"{routine.id}: the run ended without reaching a finish step")
    last = calls[-1]["result"]
    answer = last.get("answer", "") if isinstance(last, dict) else str(last)
    return Trajectory(routine.id or "", variant_id(routine, choice), calls, answer)
