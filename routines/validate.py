"""Validating a Routine against a tool list given as MCP tool schemas.

Every finding names its step, says what is wrong and how to fix it. Errors make a Routine unusable;
warnings make it weaker (e.g. a required argument the executor has to guess).
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from routines.backends.base import ToolSpec
from routines.bindings import REF, BindingError, iter_refs
from routines.conditions import ConditionSyntaxError, condition_refs, parse_condition
from routines.errors import CallerError
from routines.model import Routine, Step

Severity = Literal["error", "warning"]
_MULTI_TOOL = re.compile(r"[,;/&+|]|\s+(?:and|or|then)\s+|\s")


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    step: str | None
    message: str

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step else "routine"
        return f"{self.severity}: {where}: {self.message} [{self.code}]"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def format(self) -> str:
        if not self.findings:
            return "ok: no findings"
        return "\n".join(str(f) for f in self.findings)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [f.__dict__.copy() for f in self.findings]


def _spec(tool: Any, index: int) -> ToolSpec:
    """One tool as a ToolSpec, or a CallerError that says which entry is wrong and why."""
    if isinstance(tool, ToolSpec):
        return tool
    if not isinstance(tool, dict) and not hasattr(tool, "model_dump") and not hasattr(tool, "__dict__"):
        raise CallerError(f"tool #{index + 1} is {tool!r}, not a tool schema; give an object with 'name' and "
                          "'inputSchema' (or 'parameters')")
    if isinstance(tool, dict):
        if "name" not in tool:
            raise CallerError(f"tool #{index + 1} has no 'name'; every tool schema needs one")
        schema = tool.get("inputSchema") or tool.get("input_schema") or tool.get("parameters") or {}
        if not isinstance(schema, dict):
            raise CallerError(f"tool {tool['name']!r}: its input schema must be a JSON object, not {schema!r}")
    try:
        spec = ToolSpec.from_mcp(tool)
    except (KeyError, TypeError, ValueError) as exc:
        raise CallerError(f"tool #{index + 1} is not a usable tool schema ({exc}); give 'name' and "
                          "'inputSchema'") from None
    if not isinstance(spec.name, str) or not spec.name:
        raise CallerError(f"tool #{index + 1}: 'name' must be a non-empty string, got {spec.name!r}")
    return spec


def load_tools(source: Any) -> list[ToolSpec]:
    """Tools from a JSON file path, a ``tools/list`` result (``{"tools": [...]}``), or a list of MCP tool
    schemas / ``{name, description, parameters}`` dicts / ``ToolSpec``s. Raises ``CallerError`` (or
    ``OSError`` for a file that cannot be read) with a message that says what to fix."""
    if isinstance(source, (str, Path)):
        source = json.loads(Path(source).read_text(encoding="utf-8"))
    if isinstance(source, dict):
        source = source.get("tools", source)
    if not isinstance(source, list):
        raise CallerError("a tool list must be a JSON list of tool schemas or an object with a 'tools' list")
    return [_spec(t, i) for i, t in enumerate(source)]


def _strings(value: Any) -> Iterable[str]:
    """Every string inside a (nested) argument value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


class _Check:
    def __init__(self, routine: Routine, tools: Sequence[ToolSpec]) -> None:
        self.routine = routine
        self.tools = {t.name: t for t in tools}
        self.report = Report()
        # Every lookup below goes through these indexes, built once: validation stays linear in the number
        # of steps (a Routine sent by a caller must not be able to stall the server).
        self.labels = {s.step: s.label for s in routine.steps}
        self.order = {s.step: i for i, s in enumerate(routine.steps)}
        self.branch_map: dict[int, dict[int, list[Step]]] = {}
        for s in sorted((s for s in routine.steps if self.labels[s.step].is_branch), key=lambda s: self.labels[s.step]):
            lab = self.labels[s.step]
            self.branch_map.setdefault(lab.main, {}).setdefault(lab.branch, []).append(s)

    def branches(self, main: int) -> dict[int, list[Step]]:
        return self.branch_map.get(main, {})

    def add(self, severity: Severity, code: str, step: Step | str | None, message: str) -> None:
        label = step.step if isinstance(step, Step) else step
        self.report.findings.append(Finding(severity, code, label, message))

    def run(self) -> Report:
        if not self.routine.steps:
            self.add("error", "no_steps", None, "the Routine has no steps; add at least a finish step")
            return self.report
        self.structure()
        for step in self.routine.steps:
            self.step_fields(step)
            self.tool(step)
            self.bindings(step)
            self.condition(step)
        return self.report

    # ---- structure ------------------------------------------------------------------------------
    def structure(self) -> None:
        seen: set[str] = set()
        for s in self.routine.steps:
            if s.step in seen:
                self.add("error", "duplicate_step", s, f"step number {s.step} is used twice; number steps uniquely")
            seen.add(s.step)
        mains = [s for s in self.routine.steps if not self.labels[s.step].is_branch]
        numbers = [self.labels[s.step].main for s in mains]
        if numbers != sorted(numbers):
            self.add("warning", "step_order", None, f"main steps are out of order ({numbers}); list them by number")
        expected = list(range(1, len(set(numbers)) + 1))
        if sorted(set(numbers)) != expected:
            self.add("error", "step_gap", None, f"main steps are numbered {sorted(set(numbers))}; number them "
                     "1..n without gaps")
        main_by_no = {self.labels[s.step].main: s for s in mains}
        for s in self.routine.steps:
            lab = self.labels[s.step]
            if lab.is_branch and lab.main not in main_by_no:
                self.add("error", "orphan_branch", s, f"branch {s.step} belongs to main step {lab.main}, which does not "
                         f"exist; add a branch step {lab.main} or renumber the branch")
            elif lab.is_branch and main_by_no[lab.main].type != "branch":
                self.add("error", "orphan_branch", s, f"branch {s.step} hangs off step {lab.main}, which is a "
                         f"{main_by_no[lab.main].type!r}, not a 'branch' step; make step {lab.main} type 'branch'")
            if lab.is_branch and s.type not in ("branchnode", "finish"):
                self.add("error", "branch_type", s, f"a branch step must be of type 'branchnode' (or 'finish'), "
                         f"not {s.type!r}; set \"type\": \"branchnode\"")
            if not lab.is_branch and s.type == "branchnode":
                self.add("error", "branch_type", s, f"main step {s.step} is typed 'branchnode'; use 'node' or label it x-n_i")
        for main, step in main_by_no.items():
            branches = self.branches(main)
            if step.type == "branch" and not branches:
                self.add("error", "empty_branch", step, "a 'branch' step needs branches labelled "
                         f"{main}-1_1, {main}-2_1, ...; add them or make it a 'node'")
            if branches and sorted(branches) != list(range(1, len(branches) + 1)):
                self.add("error", "branch_gap", step, f"branches of step {main} are numbered {sorted(branches)}; "
                         f"number them {main}-1, {main}-2, ... without gaps")
            for n, bsteps in branches.items():
                idx = [self.labels[b.step].index for b in bsteps]
                if idx != list(range(1, len(idx) + 1)):
                    self.add("error", "branch_gap", f"{main}-{n}_{idx[0]}", f"branch {main}-{n} has steps {idx}; number "
                             "them _1, _2, ... without gaps")
            if len(branches) == 1:
                self.add("warning", "single_branch", step, f"step {main} has only one branch; add the alternative or "
                         "make the branch steps main steps")
        for main in main_by_no:
            for bsteps in self.branches(main).values():
                ends = [b for b in bsteps if b.type == "finish"]
                for b in bsteps:
                    if ends and self.labels[b.step].index > self.labels[ends[0].step].index:
                        self.add("error", "after_finish", b, f"step {b.step} comes after step {ends[0].step}, which ends "
                                 "the workflow, and can never run; remove it or move the finish")
        finish_mains = [s for s in mains if s.type == "finish"]
        any_finish = any(s.type == "finish" for s in self.routine.steps)
        if not any_finish:
            self.add("error", "no_finish", None, "no step ends the workflow; set \"type\": \"finish\" on the last step "
                     "(usually the summarising tool)")
        for s in mains:  # a branch point whose every branch ends the workflow is a finish too
            branches = self.branches(self.labels[s.step].main)
            ends_all = all(any(b.type == "finish" for b in bs) for bs in branches.values())
            if s.type == "branch" and branches and ends_all:
                finish_mains.append(s)
        if finish_mains:
            first = min(self.labels[s.step].main for s in finish_mains)
            for s in mains:
                if self.labels[s.step].main > first:
                    self.add("error", "after_finish", s, f"step {s.step} comes after step {first}, which ends the "
                             "workflow, and can never run; remove it or move the finish")

    def step_fields(self, step: Step) -> None:
        if not step.name:
            self.add("error", "no_name", step, "the step has no name; give it a short name")
        elif ":" in step.name or "：" in step.name:
            self.add("error", "name_colon", step, f"step name {step.name!r} contains ':', which the natural-language "
                     "form uses to separate name and description; rephrase the name")

    def tool(self, step: Step) -> None:
        if step.type == "branch":
            if step.tool:
                self.add("warning", "branch_tool", step, f"a branch step only chooses a branch; its tool {step.tool!r} "
                         "is never called - move it to a branch step")
            return
        if not step.tool:
            self.add("error", "missing_tool", step, "the step names no tool; every non-branch step calls exactly one "
                     "tool from the tool list")
            return
        if _MULTI_TOOL.search(step.tool):
            self.add("error", "multiple_tools", step, f"the step names several tools ({step.tool!r}); split it into one "
                     "step per tool")
            return
        if self.tools and step.tool not in self.tools:
            close = difflib.get_close_matches(step.tool, list(self.tools), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"available: {', '.join(sorted(self.tools)[:30])}"
            self.add("error", "unknown_tool", step, f"tool {step.tool!r} is not in the tool list; {hint}")
            return
        known = step.tool in self.tools
        schema = self.tools[step.tool].parameters if known else {}
        props = schema.get("properties", {}) or {}
        bound = step.args or {}
        if known and step.args is not None and not schema.get("additionalProperties"):
            for name in bound:
                if name not in props:
                    self.add("error", "unknown_arg", step, f"argument {name!r} is not a parameter of {step.tool} "
                             f"(parameters: {', '.join(props) or 'none'}); remove or rename it")
        if schema and step.input is None:
            missing = [p for p in schema.get("required", []) if p not in bound]
            if missing:
                self.add("warning", "unbound_required", step, f"required argument(s) {', '.join(missing)} of "
                         f"{step.tool} are neither bound in 'args' nor described in 'input'; bind or describe them")

    # ---- bindings and conditions ----------------------------------------------------------------
    def _check_step_ref(self, step: Step, ref_step: str, where: str) -> None:
        order = self.order
        if ref_step not in order:
            self.add("error", "bad_ref", step, f"{where} refers to step {ref_step}, which does not exist; use the label "
                     f"of an earlier step ({', '.join(itertools.islice(order, 8))})")
            return
        here, there = self.labels[step.step], self.labels[ref_step]
        own_point = not there.is_branch and here.main == there.main and bool(self.branches(there.main))
        if here.is_branch and own_point:
            self.add("error", "forward_ref", step, f"{where} refers to step {ref_step}, the output of the branch "
                     f"that is still running here; refer to an earlier step of this branch, e.g. "
                     f"{{{{steps.{here.main}-{here.branch}_1...}}}}")
            return
        if order[ref_step] >= order[step.step]:
            self.add("error", "forward_ref", step, f"{where} refers to step {ref_step}, which runs later (or is this "
                     "step); a step can only use outputs of earlier steps")
            return
        if there.is_branch and not (here.is_branch and (here.main, here.branch) == (there.main, there.branch)):
            self.add("error", "cross_branch_ref", step, f"{where} refers to step {ref_step}, which only runs in its "
                     f"own branch; refer to {{{{steps.{there.main}...}}}}, the output of whichever branch of step "
                     f"{there.main} ran")

    def bindings(self, step: Step) -> None:
        if step.args is None:
            return
        declared = set(((self.routine.inputs or {}).get("properties") or {}).keys())
        for name, value in step.args.items():
            try:
                refs = list(iter_refs(value))
            except BindingError as exc:
                self.add("error", "bad_ref", step, f"argument {name!r}: {exc}")
                continue
            for text in _strings(value):
                if text.count("{{") > len(REF.findall(text)):
                    self.add("error", "bad_ref", step, f"argument {name!r} has a malformed reference in {text!r}; "
                             "write {{inputs.x}}, {{system.x}} or {{steps.N.path}}")
            for ref in refs:
                if ref.root == "inputs" and ref.path[0] not in declared:
                    self.add("error", "undeclared_input", step, f"argument {name!r} uses {ref}, but the Routine's "
                             f"'inputs' schema does not declare {ref.path[0]!r}; add it to 'inputs.properties'")
                if ref.root == "steps":
                    self._check_step_ref(step, ref.path[0], f"argument {name!r}")

    def condition(self, step: Step) -> None:
        lab = self.labels[step.step]
        if step.when is None:
            if lab.is_branch and lab.index == 1 and step.type in ("branchnode", "finish"):
                siblings = self.branches(lab.main)
                if any(b[0].when for b in siblings.values()) and lab.branch != max(siblings):
                    self.add("warning", "no_when", step, "this branch has no 'when' while others do; bound and hybrid "
                             "runs check branches in order and take the last one as 'otherwise'; give this branch "
                             "a 'when' or make it the last branch")
            return
        if not (lab.is_branch and lab.index == 1):
            self.add("warning", "when_ignored", step, "'when' only applies to the first step of a branch (x-n_1); "
                     "it is ignored here; move it to the branch's first step or remove it")
        try:
            node = parse_condition(step.when)
        except ConditionSyntaxError as exc:
            self.add("error", "when_syntax", step, f"'when' does not parse: {exc}; write e.g. "
                     "{{steps.1.role}} == 'hr' and not {{inputs.urgent}}")
            return
        for ref in condition_refs(node):
            if ref.root == "steps":
                self._check_step_ref(step, ref.path[0], "'when'")
            if ref.root == "inputs":
                declared = set(((self.routine.inputs or {}).get("properties") or {}).keys())
                if ref.path[0] not in declared:
                    self.add("error", "undeclared_input", step, f"'when' uses {ref}, which 'inputs' does not declare; "
                             f"add {ref.path[0]!r} to 'inputs.properties'")


def validate(routine: Routine, tools: Iterable[Any] = ()) -> Report:
    """Check a Routine's structure, tools, bindings and conditions. ``tools``: MCP tool schemas, dicts
    or ``ToolSpec``s; with no tools, tool names are not checked."""
    specs = [_spec(t, i) for i, t in enumerate(tools)]
    return _Check(routine, specs).run()
