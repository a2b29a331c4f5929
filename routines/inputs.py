"""A Routine's ``inputs``: which are missing for a run, and reading them from the question with a model.

Bound and hybrid runs need the values their bindings use (``{{inputs.employee_name}}``). The caller passes
them, or the model extracts them from the question under the inputs' JSON schema (constrained when the
backend can, string lengths capped).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date
from typing import Any

import jsonschema

from routines.backends.base import Backend, Constraint, Message
from routines.bindings import iter_refs
from routines.conditions import ConditionSyntaxError, condition_refs, parse_condition
from routines.dates import question_dates
from routines.errors import CallerError
from routines.model import Routine

MAX_INPUT_CHARS = 120
log = logging.getLogger(__name__)


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


_WORDS = re.compile(r"[\w][\w'’&.-]*", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s?$")
_DATE_HINTS = {"YYYY-MM-DD": r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
               "YYYY-MM": r"^[0-9]{4}-(0[1-9]|1[0-2])$"}
MAX_SPAN_WORDS = 6


def spans(text: str, max_words: int = MAX_SPAN_WORDS) -> list[str]:
    """Every run of 1..max_words consecutive words of ``text``, in order of appearance, without repeats. A
    possessive is the name it belongs to ("Marie Luo's" gives "Marie Luo")."""
    words = [_POSSESSIVE.sub("", w.rstrip(".")) for w in _WORDS.findall(text)]
    out: dict[str, None] = {}
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + max_words) + 1):
            out.setdefault(" ".join(words[i:j]), None)
    return list(out)


def _property_schema(prop: dict[str, Any], query: str | None, today: date | None = None) -> dict[str, Any]:
    """A string is pinned to what it can be: its enum; for a date its description asks for, one of the
    dates the question writes (:mod:`routines.dates`) or else the date pattern; or (with ``query``) one of
    the question's word spans. A small model copies and chooses well; it invents badly."""
    prop = dict(prop)
    if prop.get("type", "string") != "string" or "enum" in prop or "const" in prop:
        return prop
    description = str(prop.get("description", ""))
    for hint, pattern in _DATE_HINTS.items():
        if hint in description or (hint == "YYYY-MM-DD" and prop.get("format") == "date"):
            days, months = question_dates(query, today) if query is not None else ([], [])
            if candidates := (days if hint == "YYYY-MM-DD" else months):
                prop["enum"] = candidates
            else:
                prop.setdefault("pattern", pattern)
            return prop
    if query is not None and "pattern" not in prop and "format" not in prop:
        options = spans(query)
        if options:
            prop["enum"] = options
            return prop
    prop.setdefault("maxLength", MAX_INPUT_CHARS)
    return prop


def extraction_schema(
    routine: Routine, names: list[str], query: str | None = None, today: date | None = None
) -> dict[str, Any]:
    """The JSON schema of one extraction reply: every name, each a value its schema allows (pinned to the
    question's spans and dates with ``query``) or ``null``, "the question does not say"."""
    props = ((routine.inputs or {}).get("properties") or {})
    out = {name: {"anyOf": [_property_schema(dict(props.get(name) or {"type": "string"}), query, today), {"type": "null"}]}
           for name in names}
    return {"type": "object", "properties": out, "required": names, "additionalProperties": False}


def readable_inputs(
    routine: Routine, query: str, inputs: dict[str, Any], names: list[str], today: date | None = None
) -> dict[str, Any]:
    """``inputs`` as a reading of ``query`` can give them (what the trainer teaches): a value the question
    writes in other letter case as the question writes it, and a value it does not write at all (the
    requester's own name in "What is my salary?", a date it never mentions) as None."""
    props = extraction_schema(routine, names, query, today)["properties"]
    out: dict[str, Any] = {}
    for name in names:
        value, allowed = inputs.get(name), props[name]["anyOf"][0]
        options = allowed.get("enum")
        if options is not None and value not in options and isinstance(value, str):
            value = next((o for o in options if isinstance(o, str) and o.casefold() == value.casefold()), None)
        if allowed.get("pattern") in _DATE_HINTS.values():  # a date the question does not write
            value = None
        try:
            jsonschema.validate(value, allowed)
        except jsonschema.ValidationError:
            value = None
        out[name] = value
    return out


def _first_object(text: str) -> Any:
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object")
    value, _ = json.JSONDecoder().raw_decode(text[start:])
    return value


def extraction_messages(routine: Routine, query: str, names: list[str]) -> list[Message]:
    """What the model reads to extract ``names`` from ``query`` (the trainer builds its examples with it)."""
    props = ((routine.inputs or {}).get("properties") or {})
    fields = "\n".join(f"- {n}: {props.get(n, {}).get('description', 'text')}" for n in names)
    system = (
        "Read the user's request and extract the values below. Copy them exactly as the request writes them. "
        f"Reply with one JSON object with these keys and nothing else.\nValues:\n{fields}"
    )
    return [Message("system", system), Message("user", query)]


def extraction_target(values: dict[str, Any], names: list[str]) -> str:
    """The reply that extracts ``values`` as constrained decoding writes it (canonical separators)."""
    return json.dumps({n: values[n] for n in names}, ensure_ascii=False)


async def extract_inputs(
    routine: Routine, query: str, inputs: dict[str, Any], backend: Backend, *, required: bool = True,
    today: date | None = None,
) -> dict[str, Any]:
    """Fill the missing inputs from the question with the model. An input the model reads as ``null`` (the
    question does not say) stays missing: a hybrid or model run leaves the steps that need it to the model.
    CallerError when the reply does not fit, unless not ``required`` (then ``inputs`` as they were).
    ``today``: the year of dates written without one."""
    names = missing_inputs(routine, inputs)
    schema = extraction_schema(routine, names, query, today)
    completion = await backend.complete(
        extraction_messages(routine, query, names), constraint=Constraint(json_schema=schema), max_tokens=200
    )
    try:
        found = _first_object(completion.text)
        jsonschema.validate(found, extraction_schema(routine, names))  # spans guide decoding; any value may do
    except (ValueError, jsonschema.ValidationError) as exc:
        if not required:
            log.info("going on without %s: %s", ", ".join(names), exc)
            return inputs
        raise CallerError(
            f"could not read {', '.join(names)} from the question ({exc}); pass them as inputs"
        ) from None
    unsaid = [n for n in names if found[n] is None]
    if unsaid:
        log.info("the question does not say %s; the run leaves it to the model", ", ".join(unsaid))
    return {**inputs, **{n: found[n] for n in names if found[n] is not None}}
