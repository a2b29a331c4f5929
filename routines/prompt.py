"""The executor's system prompt and conversation (paper appendix A.2, in our own words).

The conversation is append-only (design section 3): the system prompt is fixed for a run (role, rules,
tools, output format, the Routine, then the system parameters such as the current user), and each step adds
only its call and its result. Every result is shown with the key that holds it in variable memory, and any
long value inside it as a key of its own with a short preview, in that result's turn. So the text before
call k+1 is the text before call k plus call k and its result: a backend reuses the computed prefix from
step to step, and one training record teaches all of its calls in one sequence. (The paper keeps a
``<variables>`` block in the system prompt that grows during a run; ours shows each key where it appears.)

One builder serves the executor at run time, distillation (the dataset's ``system`` text) and evaluation
(the per-step samples), so the three always agree byte for byte.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routines.backends.base import Message, ToolSpec
from routines.model import Routine
from routines.render import render_routine
from routines.trajectory import Call

DEFAULT_ROLE = (
    "You are the execution model of an enterprise assistant. You answer a user's request by calling the "
    "company's tools, one call at a time."
)

_RULES_WITH_ROUTINE = """You are given a Routine: a numbered plan that names, for every step, what to do and which tool to call.
Rules:
- Follow the Routine step by step, in order. Do not skip a step and do not call a tool the Routine does not name.
- Look at the calls already made and their results to find the step you are at, then make the call for the next step.
- Make exactly one tool call per turn.
- "Branch x-n Step i" is step i of branch n of step x. At a branch, decide from the results so far which branch's condition holds and follow only that branch.
- Take argument values from the user's request, the system parameters and earlier results; do not invent values.
- Every result is shown with its key, such as memory_search_employee = {...}; a long value inside a result is shown as a key of its own, such as memory_members, with a preview. To pass an earlier result or a stored value, write its key (for example "memory_members") as the argument value, also inside an object or a list; the system replaces it with the stored value. Never copy a result into the arguments.
- The step that ends the workflow calls the tool that writes the answer for the user. After it nothing more is needed."""

_RULES_WITHOUT_ROUTINE = """Rules:
- Work out which tools answer the request and call them in a sensible order.
- Make exactly one tool call per turn.
- Take argument values from the user's request, the system parameters and earlier results; do not invent values.
- Every result is shown with its key, such as memory_search_employee = {...}; a long value inside a result is shown as a key of its own, such as memory_members, with a preview. To pass an earlier result or a stored value, write its key (for example "memory_members") as the argument value, also inside an object or a list; the system replaces it with the stored value. Never copy a result into the arguments.
- Finish by calling the summarising tool, which writes the answer for the user."""

_OUTPUT_FORMAT = """# Output format
Reply with exactly one tool call and nothing else, as a JSON object inside <tool_call></tool_call> tags:
<tool_call>
{"name": <tool name>, "arguments": <arguments as a JSON object>}
</tool_call>"""

SYSTEM_PARAM_LABELS = {"user_id": "current user id"}


@dataclass(frozen=True)
class PromptOptions:
    """How the Routine appears in the prompt (the evaluation's configurations and ablations)."""

    with_routine: bool = True
    io: bool = False
    tool_names: bool = True
    role: str = DEFAULT_ROLE


def render_routines(routines: Sequence[Routine | str], options: PromptOptions) -> str:
    """One Routine renders bare (paper B.1); several get a ``Routine:`` header line each (paper 5.3.3)."""
    several = len(routines) > 1
    parts = [
        r if isinstance(r, str) else render_routine(r, io=options.io, tool_names=options.tool_names, header=several)
        for r in routines
    ]
    return "\n\n".join(parts)


def seeded_order(tools: Sequence[ToolSpec], seed: int, key: str) -> list[ToolSpec]:
    """``tools`` in a random order that depends only on ``seed`` and ``key`` (a record, query or Routine id):
    how distillation and evaluation vary the tool order of their prompts reproducibly."""
    shuffled = list(tools)
    random.Random(f"{seed}:{key}").shuffle(shuffled)
    return shuffled


def tool_line(tool: ToolSpec) -> str:
    return json.dumps(tool.as_dict(), ensure_ascii=False)


def build_system_prompt(
    *,
    routines: Sequence[Routine | str],
    tools: Sequence[ToolSpec],
    system: Mapping[str, Any] | None = None,
    options: PromptOptions = PromptOptions(),
) -> str:
    """The system prompt of a run: the same at every step."""
    with_routine = options.with_routine and bool(routines)
    out = [options.role, "", _RULES_WITH_ROUTINE if with_routine else _RULES_WITHOUT_ROUTINE, ""]
    out += ["# Tools", "You can call these tools (JSON signatures inside <tools></tools>):", "<tools>"]
    out.extend(tool_line(t) for t in tools)
    out += ["</tools>", "", _OUTPUT_FORMAT, ""]
    if with_routine:
        out += ["# Routine", "<routines>", render_routines(routines, options), "</routines>", ""]
    if system:  # after the shared parts: runs of one Routine for different users share the prefix up to here
        out.append("# System parameters")
        out.extend(f"- {SYSTEM_PARAM_LABELS.get(k, k.replace('_', ' '))}: {v}" for k, v in system.items())
    return "\n".join(out).rstrip("\n")


def value_text(value: Any) -> str:
    """A value as the model sees it: compact JSON (text stays text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def observation_text(key: str, shown: Any, new_keys: Mapping[str, str]) -> str:
    """A step's result as the model sees it: ``<key> = <result>`` (long values inside it as their keys), then
    one ``<key> = <preview>`` line for each key the result added. A long result that is not an object is
    stored whole: its line is ``<key> = <preview>``."""
    lines = [] if shown == key else [f"{key} = {value_text(shown)}"]
    lines += [f"{k} = {preview}" for k, preview in new_keys.items()]
    return "\n".join(lines)


def build_messages(system_prompt: str, query: str, calls: Sequence[Call]) -> list[Message]:
    """The conversation before the next call: the run's system prompt, the query, then each completed call
    and its observation. The executor, the evaluation's samples and the training records all use this."""
    messages = [Message("system", system_prompt), Message("user", query)]
    for call in calls:
        messages.append(Message("assistant", call.call.text()))
        messages.append(Message("tool", call.observation))
    return messages
