"""The executor's system prompt and conversation (paper appendix A.2, in our own words).

The paper's parts in an order chosen for speed: what is the same for every run (role, rules, tools, output
format) comes first, then the Routine, then what differs between runs of one Routine (the system
parameters, such as the current user) and last what changes during a run (the variables). A backend can
then reuse the computed prefix from one step to the next, and across runs of the same Routine.

One builder serves the executor at run time, distillation (the dataset's ``system`` text) and evaluation
(the per-step samples), so the three always agree byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routines.backends.base import Message, ToolSpec
from routines.calls import ToolCall
from routines.model import Routine
from routines.render import render_routine

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
- A result may show a long value as a key such as memory_members. Pass that key (for example "memory_members") as the argument value; the system replaces it with the stored value.
- The step that ends the workflow calls the tool that writes the answer for the user. After it nothing more is needed."""

_RULES_WITHOUT_ROUTINE = """Rules:
- Work out which tools answer the request and call them in a sensible order.
- Make exactly one tool call per turn.
- Take argument values from the user's request, the system parameters and earlier results; do not invent values.
- A result may show a long value as a key such as memory_members. Pass that key (for example "memory_members") as the argument value; the system replaces it with the stored value.
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


def tool_line(tool: ToolSpec) -> str:
    return json.dumps(tool.as_dict(), ensure_ascii=False)


def build_system_prompt(
    *,
    routines: Sequence[Routine | str],
    tools: Sequence[ToolSpec],
    variables: Mapping[str, str] | None = None,
    system: Mapping[str, Any] | None = None,
    options: PromptOptions = PromptOptions(),
) -> str:
    """The system prompt as the executor sees it at one step. ``variables``: memory key -> preview."""
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
        out.append("")
    out += ["# Variables", "Long values stored during this task, by key (a preview of each):", "<variables>"]
    out.extend(f"{key}: {preview}" for key, preview in (variables or {}).items())
    out += ["</variables>"]
    return "\n".join(out)


def observation_text(value: Any) -> str:
    """A tool result as the model sees it: compact JSON (text results stay text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


@dataclass(frozen=True)
class Turn:
    """One completed step of the conversation: the call the model made and what came back."""

    call: ToolCall
    observation: str


def build_messages(system_prompt: str, query: str, history: Sequence[Turn]) -> list[Message]:
    messages = [Message("system", system_prompt), Message("user", query)]
    for turn in history:
        messages.append(Message("assistant", turn.call.text()))
        messages.append(Message("tool", turn.observation))
    return messages
