"""One Routine per ComplexFuncBench sample, its query record and the replay rows.

Each recorded call becomes a step that names its tool and binds every argument, so the Routine runs in
``bound`` mode and reproduces the recorded calls exactly:

- ``case_id`` from the system parameter (``{{system.case_id}}``);
- a ``$varN.path$`` reference as ``{{steps.N.path}}``, with ``.0.`` where the path passes a list (the
  benchmark's references take a list's first element);
- a literal value the question states (a string of three or more characters found in it) from the Routine's
  ``inputs``, which the query record gives;
- a literal value copied from an earlier result (a string of four or more characters, or a number that is
  not a small integer, found there) as a ``{{steps.N.path}}`` binding to where it was found, latest step first;
- anything else (dates the question gives as "tomorrow", counts, sort orders) as a constant.

Step descriptions name the step's values (the entity: ``query Paris``, ``hotel_id from step 2``), so two steps
calling the same tool are told apart; the last call is the finish step (the benchmark has no summary tool).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from routines.model import Routine
from scenarios.cfb.source import CASE_PARAM, case_id, json_type, mcp_name

_REF = re.compile(r"\$(var\d+)((?:\.[^.$]+)*)\$")
_PART = re.compile(r"^[\w\-]+$")
VALUE_CHARS = 60


def humanize(tool: str) -> str:
    """``Search_Car_Location`` -> ``Search car location``."""
    words = [w for w in tool.replace("-", "_").split("_") if w]
    text = " ".join(w.lower() if i else w[:1].upper() + w[1:].lower() for i, w in enumerate(words))
    return text.replace(" id", " ID")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def ref_path(response: Any, dotted: str) -> tuple[list[str], Any]:
    """A ``$varN.path$`` path as a binding path into ``response`` (``0`` inserted where a list is passed),
    and the value it reaches."""
    path: list[str] = []
    value = response
    for part in [p for p in dotted.split(".") if p]:
        if isinstance(value, list):
            value, path = value[0], [*path, "0"]
        value = value[part]
        path.append(part)
    return path, value


def find_path(value: Any, target: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The first path (depth first, dict order, lists by index) at which ``target`` occurs, or None."""
    if type(value) is type(target) and value == target:
        return path
    items: Iterator[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = ((str(k), v) for k, v in value.items() if _PART.match(str(k)))
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return None
    for part, child in items:
        found = find_path(child, target, (*path, part))
        if found is not None:
            return found
    return None


def _copyable(value: Any) -> bool:
    """A literal worth looking for in earlier results: long enough that a match is no coincidence."""
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return len(value) >= 4
    if isinstance(value, float):
        return not value.is_integer() or abs(value) >= 1000
    if isinstance(value, int):
        return abs(value) >= 1000
    return False


def _in_query(value: Any, query: str) -> bool:
    return isinstance(value, str) and len(value) >= 3 and value.lower() in query.lower()


@dataclass
class Binding:
    """How one argument is bound: ``kind`` is input, ref (a benchmark reference), copy (a literal found in
    an earlier result) or constant."""

    kind: str
    template: Any
    value: Any
    step: str | None = None
    path: tuple[str, ...] = ()


@dataclass
class Built:
    """A sample as the scenario needs it."""

    index: int
    routine: Routine
    query: dict[str, Any]
    calls: list[dict[str, Any]]
    """Resolved calls: ``name`` (MCP name), ``arguments`` (with the case id), ``response``."""
    bindings: list[dict[str, Binding]] = field(default_factory=list)

    @property
    def case(self) -> str:
        return case_id(self.index)

    @property
    def tools(self) -> tuple[str, ...]:
        return tuple(c["name"] for c in self.calls)


def _resolve_refs(value: Any, responses: Mapping[str, Any], steps: Mapping[str, str]) -> tuple[Any, Any, list]:
    """(template, resolved value, [(step, path)]) of a literal that may hold ``$varN.path$`` references."""
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            path, resolved = ref_path(responses[whole.group(1)], whole.group(2))
            step = steps[whole.group(1)]
            return "{{steps." + ".".join([step, *path]) + "}}", resolved, [(step, tuple(path))]
        return value, value, []
    if isinstance(value, list):
        parts = [_resolve_refs(v, responses, steps) for v in value]
        return [p[0] for p in parts], [p[1] for p in parts], [r for p in parts for r in p[2]]
    if isinstance(value, Mapping):
        parts = {k: _resolve_refs(v, responses, steps) for k, v in value.items()}
        return ({k: p[0] for k, p in parts.items()}, {k: p[1] for k, p in parts.items()},
                [r for p in parts.values() for r in p[2]])
    return value, value, []


def _describe(tool: str, binds: Mapping[str, Binding]) -> str:
    given = [f"{name} {_short(b.value)}" for name, b in binds.items() if b.kind in ("input", "constant")]
    by_source: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for name, b in binds.items():
        if b.kind in ("ref", "copy") and b.step is not None:
            by_source.setdefault((b.step, b.path), []).append(name)
    taken = [f"{' and '.join(names)} from step {step} ({'.'.join(path) or 'the whole result'})"
             for (step, path), names in by_source.items()]
    parts = given + taken
    return f"{humanize(tool)} with " + ", ".join(parts) if parts else humanize(tool)


def build_sample(index: int, sample: Mapping[str, Any], schemas: Mapping[str, dict[str, Any]]) -> Built:
    """The Routine, query record and resolved calls of the sample at 0-based ``index``. ``schemas`` maps MCP
    tool names to their input schemas."""
    query = " ".join(str(sample["input"]).split())
    case = case_id(index)
    responses: dict[str, Any] = {}
    steps: dict[str, str] = {}
    inputs: dict[str, Any] = {}
    input_props: dict[str, Any] = {}
    input_keys: dict[str, list[str]] = {}
    routine_steps: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    all_binds: list[dict[str, Binding]] = []
    outputs_used: dict[str, dict[str, set[str]]] = {}
    last = len(sample["output"])
    for n, call in enumerate(sample["output"], start=1):
        tool = mcp_name(call["name"])
        props = schemas[tool].get("properties", {})
        binds: dict[str, Binding] = {}
        resolved_args: dict[str, Any] = {CASE_PARAM: case}
        for name, raw in call["arguments"].items():
            template, value, refs = _resolve_refs(raw, responses, steps)
            if refs and isinstance(raw, str):
                binds[name] = Binding("ref", template, value, refs[0][0], refs[0][1])
            elif refs:
                binds[name] = Binding("constant", template, value)  # a list or object holding references
            elif _in_query(value, query):
                keys = input_keys.setdefault(name, [])
                key = next((k for k in keys if inputs[k] == value), None)
                if key is None:
                    key = name if not keys else f"{name}_{len(keys) + 1}"
                    keys.append(key)
                    inputs[key] = value
                    desc = props.get(name, {}).get("description") or name.replace("_", " ")
                    input_props[key] = {"type": json_type(value),
                                        "description": f"{desc} (from the question)"}
                binds[name] = Binding("input", "{{inputs." + key + "}}", value)
            else:
                found = None
                if _copyable(value):
                    for label in reversed(list(responses)):
                        path = find_path(responses[label], value)
                        if path is not None:
                            found = (steps[label], path)
                            break
                if found is not None:
                    binds[name] = Binding("copy", "{{steps." + ".".join([found[0], *found[1]]) + "}}", value,
                                          found[0], found[1])
                else:
                    binds[name] = Binding("constant", value, value)
            resolved_args[name] = value
        for b in binds.values():
            if b.step is not None:
                outputs_used.setdefault(b.step, {}).setdefault(".".join(b.path) or "the whole result", set()).add(str(n))
        label = str(n)
        routine_steps.append({
            "step": label, "name": humanize(tool), "description": _describe(tool, binds), "tool": tool,
            "type": "finish" if n == last else "node",
            "input": "; ".join(["case id"] + [
                f"{k} from the question" if b.kind == "input" else f"{k} from step {b.step}" if b.step else f"{k} {_short(b.value)}"
                for k, b in binds.items()]),
            "args": {CASE_PARAM: "{{system." + CASE_PARAM + "}}", **{k: b.template for k, b in binds.items()}},
        })
        responses[call["label"]] = call["response"]
        steps[call["label"]] = label
        calls.append({"name": tool, "arguments": resolved_args, "response": call["response"]})
        all_binds.append(binds)
    seen: dict[tuple[str, str], str] = {}
    for step in routine_steps:
        used = outputs_used.get(step["step"])
        step["output"] = ("; ".join(f"{path} for step {', '.join(sorted(s, key=int))}" for path, s in used.items())
                          if used else "the result for the answer")
        key = (step["tool"], step["description"])
        if key in seen:  # the same call again: say so, so the steps stay distinguishable
            step["description"] += f" (again, as in step {seen[key]})"
        seen.setdefault(key, step["step"])
    routine = Routine.model_validate({
        "id": f"cfb.{index + 1:04d}", "name": f"ComplexFuncBench case {index + 1:04d}", "version": 1,
        "description": query,
        "inputs": {"type": "object", "properties": input_props, "required": list(input_props)},
        "steps": routine_steps,
    })
    record = {
        "id": case, "query": query, "routine_id": routine.id, "variant": routine.id, "system": {CASE_PARAM: case},
        "inputs": inputs, "tools": [c["name"] for c in calls],
    }
    return Built(index, routine, record, calls, all_binds)
