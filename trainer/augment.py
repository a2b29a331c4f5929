"""Query phrasing augmentation from the scenario's own templates (paper 4.2.3: the same request in other
words, so the student does not learn one wording per Routine).

A scenario's query records say which phrasing they were filled from (``"phrasing": "How much does {name}
from {dept} earn?"``, or a ``template`` that is itself the phrasing) and which template it belongs to
(``"template": "salary.hr_base"``). The phrasings of one template ask the same thing of the same kind of
user, so another phrasing with the same slots, filled with the values the query's own phrasing had, is the
same request reworded and has the same trajectory. The values are read back from the query text by matching
it against its own phrasing, so nothing but the text and the templates is needed.

Phrasings come from the query records themselves and from the scenario's templates file
(``scenario.json`` key ``templates``, default ``data/query_templates.json`` when it exists) in either shape:
``{group: [phrasing, ...]}`` or ``{group: [{"key": template, "phrasings": [phrasing, ...]}, ...]}``, where a
group is a flattened variant or a Routine id. Deterministic: the same seed picks the same phrasings. No model
is involved; the paper's LLM rewording could be added as another source.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from routines.errors import CallerError

_SLOT = re.compile(r"\{\{?\s*([A-Za-z_]\w*)\s*\}?\}")
ANY = "*"
"""The template key of phrasings that are all interchangeable within their group."""

PhrasingSets = dict[tuple[str, str], list[str]]
DEFAULT_TEMPLATES = "data/query_templates.json"


def group_of(query: Mapping[str, Any]) -> str:
    """Queries of one group share their templates: the flattened variant, else the Routine."""
    return str(query.get("variant") or query.get("routine_id") or "")


def slots(phrasing: str) -> set[str]:
    return {m.group(1) for m in _SLOT.finditer(phrasing)}


def fill(phrasing: str, values: Mapping[str, Any]) -> str | None:
    """``phrasing`` with ``{name}`` (or ``{{name}}``) slots filled from ``values``; None when one has no value."""
    if not slots(phrasing) <= set(values):
        return None
    return _SLOT.sub(lambda m: str(values[m.group(1)]), phrasing)


def slot_values(phrasing: str, text: str) -> dict[str, str] | None:
    """The values that fill ``phrasing`` to give exactly ``text`` (None when it does not fit)."""
    pattern, seen, last = "", set(), 0
    for m in _SLOT.finditer(phrasing):
        pattern += re.escape(phrasing[last : m.start()])
        name = m.group(1)
        pattern += f"(?P={name})" if name in seen else f"(?P<{name}>.+?)"
        seen.add(name)
        last = m.end()
    pattern += re.escape(phrasing[last:])
    found = re.fullmatch(pattern, text, re.DOTALL)
    return found.groupdict() if found else None


def own_phrasing(query: Mapping[str, Any]) -> tuple[str, str] | None:
    """(template key, phrasing) a query was filled from, when its record says."""
    phrasing, template = query.get("phrasing"), query.get("template")
    if isinstance(phrasing, str):
        return (str(template) if template is not None else ANY), phrasing
    if isinstance(template, str) and _SLOT.search(template):
        return ANY, template
    return None


def _add(sets: PhrasingSets, key: tuple[str, str], phrasings: Sequence[str]) -> None:
    known = sets.setdefault(key, [])
    known.extend(p for p in phrasings if p not in known)


def load_template_file(path: Path) -> PhrasingSets:
    """A scenario's templates file, in either shape (see the module docstring)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CallerError(f"{path}: a templates file is a JSON object of group -> templates")
    sets: PhrasingSets = {}
    for group, entries in data.items():
        if not isinstance(entries, list):
            raise CallerError(f"{path}: templates of {group!r} must be a list")
        for entry in entries:
            if isinstance(entry, str):
                _add(sets, (str(group), ANY), [entry])
            elif isinstance(entry, dict) and isinstance(entry.get("phrasings"), list):
                _add(sets, (str(group), str(entry.get("key", ANY))), [str(p) for p in entry["phrasings"]])
            else:
                raise CallerError(f"{path}: a template of {group!r} is a string or {{key, phrasings: [...]}}")
    return sets


def collect_phrasings(queries: Sequence[Mapping[str, Any]], extra: PhrasingSets | None = None) -> PhrasingSets:
    """(group, template key) -> phrasings, in first-seen order: the query records', then ``extra``'s."""
    sets: PhrasingSets = {}
    for q in queries:
        own = own_phrasing(q)
        if own is not None:
            _add(sets, (group_of(q), own[0]), [own[1]])
    for key, phrasings in (extra or {}).items():
        _add(sets, key, phrasings)
    return sets


def phrasings(query: Mapping[str, Any], sets: PhrasingSets) -> list[tuple[str, str]]:
    """Other wordings of ``query`` as (phrasing, text): the other phrasings of its template with the same
    slots, filled with the values its own phrasing had in its text."""
    own = own_phrasing(query)
    text = str(query.get("query", ""))
    if own is None:
        return []
    key, phrasing = own
    values = slot_values(phrasing, text)
    if values is None:
        return []
    out: list[tuple[str, str]] = []
    for other in sets.get((group_of(query), key), []):
        if other == phrasing or slots(other) != set(values):
            continue  # a different slot set would add or lose information
        filled = fill(other, values)
        if filled is not None and filled != text and all(filled != t for _, t in out):
            out.append((other, filled))
    return out


def augment(
    queries: Sequence[Mapping[str, Any]],
    per_query: int,
    *,
    seed: int = 0,
    templates: PhrasingSets | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Up to ``per_query`` reworded copies of every query (ids ``<id>~a1``, ``<id>~a2``, ...; ``augmented_from``
    names the original, ``phrasing`` the wording used). Returns them and the ids that had no other wording."""
    if per_query <= 0:
        return [], []
    sets = collect_phrasings(queries, templates)
    extra: list[dict[str, Any]] = []
    without: list[str] = []
    for q in queries:
        options = phrasings(q, sets)
        if not options:
            without.append(str(q.get("id")))
            continue
        chosen = random.Random(f"{seed}:{q.get('id')}").sample(options, min(per_query, len(options)))
        for n, (phrasing, text) in enumerate(chosen, start=1):
            copy = {**q, "id": f"{q.get('id')}~a{n}", "query": text, "augmented_from": q.get("id")}
            copy["phrasing" if "phrasing" in q else "template"] = phrasing
            extra.append(copy)
    return extra, without


def scenario_templates(scenario: Any) -> PhrasingSets | None:
    """A :class:`routines.scenario.Scenario`'s templates file: ``scenario.json``'s ``templates``, else
    ``data/query_templates.json``; None when it has none."""
    path = scenario.root / scenario.manifest.get("templates", DEFAULT_TEMPLATES)
    return load_template_file(path) if path.exists() else None
