"""The planner: an expert's rough draft plus a tool list in, a structured, validated Routine out (paper 3.1.2).

A model gets a prompt with the parts of the paper's appendix A.1 (in our own words): a JSON list of steps,
one tool per step, the ``x-n_i`` branch notation, the finish type, and inputs/outputs worked out from the
tool descriptions. Its answer is read tolerantly (code fences, prose around, an object or a bare list),
validated against the tool list, and the findings are fed back for a bounded number of repairs. An answer
that never validates ends with its report, not an exception: a bad plan is the model's error, not ours.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from routines.backends.base import Backend, Constraint, Message, ToolSpec
from routines.bindings import iter_refs
from routines.errors import BindingError, CallerError, PlanParseError
from routines.model import Routine, Step
from routines.render import render_routine
from routines.validate import Finding, Report, validate

log = logging.getLogger(__name__)

_INTRO = """You write Routines: numbered procedures that a small execution model follows, one tool call per step, to carry out a company process.
Turn the expert's draft below into a structured Routine that uses only the tools listed."""

_FORMAT = """# Output
One JSON object and nothing else (no prose, no code fence):
{"name": "<short name of the procedure>", "description": "<one sentence: which requests this Routine handles>", "steps": [<step>, ...]}

Each step is an object like
{"step": "1", "name": "Find employee", "description": "Search the employee named in the question", "input": "employee name from the question", "output": "employee id", "tool": "search_employee", "type": "node"}
- "step": main steps are numbered "1", "2", "3", ... in the order they run.
- "name": a few words, without a colon.
- "description": what the step does, and when it applies.
- "input": in plain words, where the value of each parameter of the tool comes from (the question, the current user, the output of an earlier step). Read the tool's parameters: every required one must be covered.
- "output": in plain words, what the tool gives back, from its description.
- "tool": exactly one tool from the tool list, spelled as listed. Every step except a branch check uses one listed tool; never "none", never two tools in one step, never a tool that is not listed. If the draft needs two tools, write two steps.
- "type": "node" for an ordinary step, "branch" for a condition check (it has no tool), "branchnode" for a step inside a branch, "finish" for the step that ends the workflow."""

_BRANCHES = """# Branches
When what happens next depends on a condition, write a "branch" step that says what is checked, then each alternative as its own branch. "x-n_i" is step i of branch n of main step x. The first step of a branch says in its description when that branch is taken. For example, at main step 3:
{"step": "3", "name": "Check role", "description": "Branch on the requester's role", "type": "branch"},
{"step": "3-1_1", "name": "Full salary", "description": "If the requester works in HR, get the salary", "tool": "get_salary", "type": "branchnode"},
{"step": "3-1_2", "name": "...", "description": "A second step of branch 1", "tool": "...", "type": "branchnode"},
{"step": "3-2_1", "name": "Salary band", "description": "Otherwise get the salary band", "tool": "get_salary_band", "type": "branchnode"},
{"step": "4", ...}  (the main line goes on after the branches)
Put each alternative in its own branch; never describe two alternatives in one step.

# Finish
The step that ends the workflow (usually the tool that writes the answer for the user) has "type": "finish". A branch that ends the workflow early ends with a "finish" step."""

_BINDINGS = """# Argument bindings
Also give "args" to each step whose argument values are known before it runs: parameter name -> value, where a value is a constant or a template:
- {{inputs.NAME}}: a value the caller passes (e.g. the employee name from the question). Declare each one in a top-level "inputs" JSON schema: {"type": "object", "properties": {"NAME": {"type": "string", "description": "..."}}, "required": ["NAME"]}.
- {{system.user_id}}: the id of the current user.
- {{steps.N.PATH}}: a field of the output of earlier step N, e.g. {{steps.2.employee_id}} or {{steps.2.matches.0.id}}. Inside a branch, refer to earlier main steps or earlier steps of the same branch; after a branch, {{steps.3}} is the output of whichever branch of step 3 ran.
Use only parameters of the step's own tool. Leave "args" out where the value has to be worded by the model (free text, summaries).
The first step of a branch may get "when", a condition such as "{{steps.1.role}} == 'hr'" or "{{steps.2.count}} > 0" (operators: == != < <= > >= in, and/or/not)."""

_FEEDBACK = """Your Routine was checked against the tool list and has problems:
{findings}
Fix every error and write the whole corrected Routine again: the JSON object only."""

_UNREADABLE = """Your answer could not be read as a Routine: {error}
Write the Routine as one JSON object {{"name": ..., "description": ..., "steps": [...]}} and nothing else."""

STEP_KEYS = set(Step.model_fields)
ROUTINE_KEYS = {"id", "name", "description", "inputs", "steps"}
_TYPES = {"node": "node", "branch": "branch", "branchnode": "branchnode", "branch_node": "branchnode",
          "branch-node": "branchnode", "finish": "finish", "end": "finish"}
_NO_TOOL = {"", "none", "null", "n/a", "no tool", "no tool needed"}


def tool_specs(tools: Sequence[Any]) -> list[ToolSpec]:
    specs = [ToolSpec.from_mcp(t) for t in tools]
    if not specs:
        raise CallerError("the planner needs a tool list: every step must use one of the given tools; connect "
                          "downstream servers that have tools, or give the tools")
    return specs


def planning_prompt(draft: str, tools: Sequence[Any], *, bind: bool = False) -> str:
    """The planning prompt for a draft and a tool list (published by the MCP server as a prompt)."""
    tool_lines = "\n".join(json.dumps(t.as_dict(), ensure_ascii=False) for t in tool_specs(tools))
    parts = [_INTRO, _FORMAT, _BRANCHES]
    if bind:
        parts.append(_BINDINGS)
    parts.append(f"# Tools\n<tools>\n{tool_lines}\n</tools>")
    parts.append(f"# Draft from the expert\n<draft>\n{draft.strip()}\n</draft>")
    parts.append("Write the Routine now: the JSON object only.")
    return "\n\n".join(parts)


def routine_schema(tools: Sequence[Any], *, bind: bool = False, max_string_length: int = 300) -> dict[str, Any]:
    """JSON schema of the planner's answer, for constrained decoding: capped strings, tool names as an enum."""

    def text(limit: int = max_string_length) -> dict[str, Any]:
        return {"type": "string", "maxLength": limit}

    step: dict[str, Any] = {
        "type": "object",
        "properties": {
            "step": {"type": "string", "pattern": r"^[0-9]{1,2}(-[0-9]{1,2}_[0-9]{1,2})?$"},
            "name": text(60),
            "description": text(),
            "input": text(),
            "output": text(),
            "tool": {"type": "string", "enum": [t.name for t in tool_specs(tools)]},
            "type": {"type": "string", "enum": ["node", "branch", "branchnode", "finish"]},
        },
        "required": ["step", "name", "description", "type"],
        "additionalProperties": False,
    }
    top: dict[str, Any] = {
        "type": "object",
        "properties": {"name": text(80), "description": text(),
                       "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": 40}},
        "required": ["name", "description", "steps"],
        "additionalProperties": False,
    }
    if bind:
        step["properties"]["args"] = {"type": "object"}
        step["properties"]["when"] = text(200)
        top["properties"]["inputs"] = {"type": "object"}
    return top


# ---- reading the answer -------------------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z]*\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")


def _routine_like(value: Any) -> dict[str, Any] | None:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and "step" in value[0]:
        return {"steps": value}
    if isinstance(value, dict):
        if isinstance(value.get("steps"), list):
            return value
        for inner in value.values():  # {"routine": {...}}
            if isinstance(inner, dict) and isinstance(inner.get("steps"), list):
                return inner
    return None


def _decode_all(text: str) -> list[Any]:
    """Every JSON value that starts at a '{' or '[' of the text and decodes, outermost first."""
    decoder = json.JSONDecoder()
    found, pos = [], 0
    while (start := min((i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0), default=-1)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        found.append(value)
        pos = end
    return found


def extract_routine_data(text: str) -> dict[str, Any]:
    """The Routine object in a model's answer: code fences, prose around, ``<think>`` blocks, an object with
    ``steps`` or a bare list of steps, trailing commas. Raises :class:`PlanParseError`."""
    body = _THINK.sub("", text).strip()
    chunks = [m.group(1) for m in _FENCE.finditer(body)] + [body]
    for chunk in chunks:
        for candidate in (chunk, _TRAILING_COMMA.sub(r"\1", chunk)):
            for value in _decode_all(candidate):
                data = _routine_like(value)
                if data is not None:
                    return data
    if not body:
        raise PlanParseError("the answer was empty")
    if "{" not in body and "[" not in body:
        raise PlanParseError("the answer holds no JSON at all")
    raise PlanParseError('no JSON object with a "steps" list (nor a JSON list of steps) was found, or it does not '
                         "parse; check quotes, commas and brackets")


def normalize(data: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """Forgive harmless slips (``"Node"``, ``"tool": "none"``, unknown keys) and report what was dropped."""
    notes: list[Finding] = []
    out = {k: v for k, v in data.items() if k in ROUTINE_KEYS}
    for key in sorted(set(data) - ROUTINE_KEYS - {"version"}):
        notes.append(Finding("warning", "ignored_field", None, f"the field {key!r} is not part of a Routine; dropped"))
    steps = []
    for raw in data.get("steps", []):
        if not isinstance(raw, dict):
            steps.append(raw)  # the model validation will say what is wrong
            continue
        step = {k: v for k, v in raw.items() if k in STEP_KEYS}
        label = str(raw.get("step", "?"))
        for key in sorted(set(raw) - STEP_KEYS):
            notes.append(Finding("warning", "ignored_field", label, f"the field {key!r} is not a step field; dropped"))
        if isinstance(step.get("type"), str):
            step["type"] = _TYPES.get(step["type"].strip().lower(), step["type"])
        if isinstance(step.get("tool"), str) and step["tool"].strip().lower() in _NO_TOOL:
            step["tool"] = None
        for key in ("input", "output", "description", "name"):
            if isinstance(step.get(key), (dict, list)):
                step[key] = json.dumps(step[key], ensure_ascii=False)
        steps.append(step)
    out["steps"] = steps
    return out, notes


def derive_inputs(routine: Routine, tools: Sequence[ToolSpec]) -> Routine:
    """Declare the ``{{inputs.x}}`` a Routine uses but does not declare, typed from the tool parameter."""
    params = {t.name: (t.parameters.get("properties") or {}) for t in tools}
    schema = dict(routine.inputs or {"type": "object", "properties": {}})
    props = dict(schema.get("properties") or {})
    for step in routine.steps:
        for pname, value in (step.args or {}).items():
            try:
                refs = list(iter_refs(value))
            except BindingError:
                continue  # validation reports it
            for ref in refs:
                if ref.root == "inputs" and ref.path[0] not in props:
                    ptype = params.get(step.tool or "", {}).get(pname, {}).get("type", "string")
                    props[ref.path[0]] = {"type": ptype, "description": f"{pname} for {step.tool}"}
    if not props:
        return routine
    schema["type"], schema["properties"] = "object", props
    return routine.model_copy(update={"inputs": schema})


# ---- the loop -----------------------------------------------------------------------------------------


@dataclass
class PlanAttempt:
    """One model answer and what became of it."""

    raw: str
    routine: Routine | None
    report: Report


@dataclass
class PlanResult:
    """``routine``: the last Routine read (valid when ``ok``; ``None`` if no answer was readable).
    ``text``: its natural-language form (the raw answer when none was readable). ``report``: the findings
    on it. ``attempts``: every answer in order (1 + repairs)."""

    routine: Routine | None
    text: str
    report: Report
    attempts: list[PlanAttempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.routine is not None and self.report.ok


class Planner:
    """Draft to Routine with a model backend. ``bind``: ask for ``args`` bindings too. ``max_repairs``:
    how many times the findings are fed back before giving up. ``constrain``: send the answer's JSON schema
    as a decoding constraint (backends that cannot enforce it ignore it)."""

    def __init__(
        self,
        backend: Backend,
        *,
        bind: bool = False,
        max_repairs: int = 2,
        constrain: bool = True,
        max_tokens: int = 3000,
    ) -> None:
        if max_repairs < 0:
            raise ValueError("max_repairs must be 0 or more")
        self.backend = backend
        self.bind = bind
        self.max_repairs = max_repairs
        self.constrain = constrain
        self.max_tokens = max_tokens

    def read(self, raw: str, tools: Sequence[ToolSpec], *, name: str = "", routine_id: str | None = None) -> PlanAttempt:
        """Read and check one answer."""
        try:
            data, notes = normalize(extract_routine_data(raw))
            if name and not data.get("name"):
                data["name"] = name
            if routine_id:
                data["id"] = routine_id
            routine = Routine.model_validate(data)
        except PlanParseError as exc:
            return PlanAttempt(raw, None, Report([Finding("error", "unreadable", None, str(exc))]))
        except ValidationError as exc:
            findings = [Finding("error", "bad_field", _step_of(e["loc"], data), f"{_loc(e['loc'])}: {e['msg']}")
                        for e in exc.errors()[:10]]
            return PlanAttempt(raw, None, Report(findings))
        if self.bind:
            routine = derive_inputs(routine, tools)
        report = validate(routine, tools)
        report.findings.extend(notes)
        return PlanAttempt(raw, routine, report)

    async def plan(
        self, draft: str, tools: Sequence[Any], *, name: str = "", routine_id: str | None = None
    ) -> PlanResult:
        specs = tool_specs(tools)
        name = name or draft_title(draft)
        messages = [Message("user", planning_prompt(draft, specs, bind=self.bind))]
        constraint = Constraint(json_schema=routine_schema(specs, bind=self.bind)) if self.constrain else None
        attempts: list[PlanAttempt] = []
        for round_no in range(self.max_repairs + 1):
            completion = await self.backend.complete(messages, constraint=constraint, max_tokens=self.max_tokens)
            attempt = self.read(completion.text, specs, name=name, routine_id=routine_id)
            attempts.append(attempt)
            if attempt.routine is not None and attempt.report.ok:
                log.info("plan accepted after %d attempt(s)", round_no + 1)
                break
            log.info("plan attempt %d rejected: %d error(s)", round_no + 1, len(attempt.report.errors))
            messages += [Message("assistant", completion.text), Message("user", feedback(attempt))]
        last_read = next((a for a in reversed(attempts) if a.routine is not None), None)
        final = attempts[-1] if attempts[-1].routine is not None or last_read is None else last_read
        text = render_routine(final.routine) if final.routine is not None else final.raw
        return PlanResult(routine=final.routine, text=text, report=final.report, attempts=attempts)


def draft_title(draft: str) -> str:
    """A fallback name from the draft's first line, for answers that give none."""
    first = next((ln.strip() for ln in draft.splitlines() if ln.strip()), "")
    first = re.sub(r"^[#*\-\s]+", "", first).split(":")[0].strip()
    return first[:60].rstrip()


def feedback(attempt: PlanAttempt) -> str:
    """What the model is told about a rejected answer."""
    if attempt.routine is None and attempt.report.codes() == {"unreadable"}:
        return _UNREADABLE.format(error=attempt.report.errors[0].message)
    shown = attempt.report.errors + [f for f in attempt.report.warnings if f.code != "ignored_field"]
    return _FEEDBACK.format(findings="\n".join(f"- {f}" for f in shown))


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "value"


def _step_of(loc: tuple[Any, ...], data: dict[str, Any]) -> str | None:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps", [])
        if loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            return str(steps[loc[1]].get("step", loc[1] + 1))
    return None


async def plan(
    draft: str,
    tools: Sequence[Any],
    backend: Backend,
    bind: bool = False,
    max_repairs: int = 2,
    **options: Any,
) -> PlanResult:
    """Turn an expert's draft into a validated Routine (see :class:`Planner`)."""
    name = options.pop("name", "")
    routine_id = options.pop("routine_id", None)
    planner = Planner(backend, bind=bind, max_repairs=max_repairs, **options)
    return await planner.plan(draft, tools, name=name, routine_id=routine_id)
