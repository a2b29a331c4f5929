"""Argument bindings: ``{{inputs.x}}``, ``{{system.x}}``, ``{{steps.<step>.<path>}}`` resolved against run state.

A value that is exactly one reference takes the referenced value with its type; a reference inside a longer
string is substituted as text (JSON for non-strings). Paths go into dicts by key and into lists by index:
``{{steps.2.matches.0.employee_id}}``. ``{{steps.2}}`` is the whole output of step 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from routines.errors import BindingError

REF = re.compile(r"\{\{\s*([A-Za-z_]\w*)((?:\.[\w\-]+)*)\s*\}\}")
ROOTS = ("inputs", "system", "steps")
_INDEX = re.compile(r"-?[0-9]+")


@dataclass
class RunState:
    """What bindings and conditions can see during a run."""

    inputs: dict[str, Any] = field(default_factory=dict)
    system: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    """Step label -> that step's output (the tool's structured result)."""


@dataclass(frozen=True)
class Ref:
    root: str
    path: tuple[str, ...]

    @property
    def step(self) -> str | None:
        return self.path[0] if self.root == "steps" and self.path else None

    def __str__(self) -> str:
        return "{{" + ".".join((self.root, *self.path)) + "}}"


def parse_ref(root: str, dotted_path: str) -> Ref:
    path = tuple(p for p in dotted_path.split(".") if p)
    if root not in ROOTS:
        raise BindingError(f"unknown reference root {root!r} in {{{{{root}{dotted_path}}}}}; use one of {', '.join(ROOTS)}")
    if not path:
        example = {"steps": "steps.2.employee_id", "system": "system.user_id"}.get(root, f"{root}.name")
        raise BindingError(f"reference {{{{{root}}}}} needs a name, e.g. {{{{{example}}}}}")
    return Ref(root, path)


def iter_refs(value: Any) -> Iterator[Ref]:
    """Every reference inside a (nested) argument value."""
    if isinstance(value, str):
        for m in REF.finditer(value):
            yield parse_ref(m.group(1), m.group(2))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from iter_refs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_refs(v)


def lookup(ref: Ref, state: RunState) -> Any:
    base: Any = {"inputs": state.inputs, "system": state.system, "steps": state.steps}[ref.root]
    trail = ref.root
    for part in ref.path:
        if isinstance(base, Mapping):
            if part not in base:
                known = ", ".join(map(str, list(base)[:12])) or "nothing"
                raise BindingError(f"{ref}: {trail} has no {part!r} (it has: {known})")
            base = base[part]
        elif isinstance(base, list) and _INDEX.fullmatch(part):
            index = int(part)
            if not -len(base) <= index < len(base):
                raise BindingError(f"{ref}: index {index} is out of range for {trail} (length {len(base)})")
            base = base[index]
        else:
            raise BindingError(f"{ref}: cannot take {part!r} of {trail}, which is a {type(base).__name__}")
        trail = f"{trail}.{part}"
    return base


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def resolve(value: Any, state: RunState) -> Any:
    """Resolve every reference in ``value`` (strings, lists, dicts; other values pass through)."""
    if isinstance(value, str):
        whole = REF.fullmatch(value.strip())
        if whole:
            return lookup(parse_ref(whole.group(1), whole.group(2)), state)
        return REF.sub(lambda m: _as_text(lookup(parse_ref(m.group(1), m.group(2)), state)), value)
    if isinstance(value, Mapping):
        return {k: resolve(v, state) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, state) for v in value]
    return value


def resolve_args(args: Mapping[str, Any] | None, state: RunState) -> dict[str, Any]:
    return {k: resolve(v, state) for k, v in (args or {}).items()}


def resolvable_args(args: Mapping[str, Any] | None, state: RunState) -> dict[str, Any]:
    """The arguments ``state`` can already resolve; one bound to something the run lacks is left out."""
    out = {}
    for name, value in (args or {}).items():
        try:
            out[name] = resolve(value, state)
        except BindingError:
            continue
    return out


def is_bound(step: Any, schema: Mapping[str, Any] | None = None) -> bool:
    """True when the step's ``args`` cover every required parameter of its tool's schema (or, without a
    schema, when it has ``args`` at all). A step without a tool is never "bound"."""
    if not getattr(step, "tool", None) or step.args is None:
        return False
    required = (schema or {}).get("required", [])
    return all(name in step.args for name in required)


def evaluate_when(expr: str, state: RunState) -> bool:
    """Evaluate a ``when`` condition (see :mod:`routines.conditions`)."""
    from routines.conditions import evaluate

    return evaluate(expr, state)
