"""A Routine's ``inputs``: which are missing for a run, and reading them from the question with a model.

Bound and hybrid runs need the values their bindings use (``{{inputs.employee_name}}``). The caller passes
them, or the model extracts them from the question under the inputs' JSON schema (constrained when the
backend can, string lengths capped).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from routines.backends.base import Backend, Constraint, Message
from routines.bindings import iter_refs
from routines.conditions import ConditionSyntaxError, condition_refs, parse_condition
from routines.errors import CallerError
from routines.model import Routine

MAX_INPUT_CHARS = 120


def used_inputs(routine: Routine) -> list[str]:
    """Input names the Routine's bindings and conditions use, plus those its schema requires."""
    names: dict[str, None] = {n: None for n in (routine.inputs or {}).get("required", [])}
    for step in routine.steps:
        for ref in iter_refs(step.args or {}):
            if ref.root == "inputs":
                names.setdefault(ref.path[0], None)
        if step.when:
            try:
                refs = condition_refs(parse_condition(step.when))
            except ConditionSyntaxError:
                refs = []
            for ref in refs:
                if ref.root == "inputs":
                    names.setdefault(ref.path[0], None)
    return list(names)


def missing_inputs(routine: Routine, inputs: dict[str, Any]) -> list[str]:
    return [n for n in used_inputs(routine) if n not in inputs]


def extraction_schema(routine: Routine, names: list[str]) -> dict[str, Any]:
    props = ((routine.inputs or {}).get("properties") or {})
    out: dict[str, Any] = {}
    for name in names:
        prop = dict(props.get(name) or {"type": "string"})
        if prop.get("type", "string") == "string":
            prop.setdefault("maxLength", MAX_INPUT_CHARS)
        out[name] = prop
    return {"type": "object", "properties": out, "required": names, "additionalProperties": False}


def _first_object(text: str) -> Any:
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object")
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    return value


async def extract_inputs(routine: Routine, query: str, inputs: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """Fill the missing inputs from the question with the model. CallerError when it cannot."""
    names = missing_inputs(routine, inputs)
    schema = extraction_schema(routine, names)
    fields = "\n".join(f"- {n}: {schema['properties'][n].get('description', schema['properties'][n].get('type'))}"
                       for n in names)
    system = (
        "Read the user's request and extract the values below. Copy them exactly as the request writes them. "
        f"Reply with one JSON object and nothing else.\nValues:\n{fields}\nJSON schema: {json.dumps(schema)}"
    )
    completion = await backend.complete(
        [Message("system", system), Message("user", query)], constraint=Constraint(json_schema=schema), max_tokens=200
    )
    try:
        found = _first_object(completion.text)
        jsonschema.validate(found, schema)
    except (ValueError, jsonschema.ValidationError) as exc:
        raise CallerError(
            f"could not read {', '.join(names)} from the question ({exc}); pass them as inputs"
        ) from None
    return {**inputs, **{n: found[n] for n in names}}
