"""New names in old requests: entity-swapped copies of train queries for the input-extraction examples.

The HR test split asks about employees and departments no train query names (by design), and the executor's
input reading failed on exactly that: it cut "HRBP Engineering and Operations" to "HRBP Engineering" and kept
"Will" of "Will Jonas He". Copying a span the model has never seen is what these examples teach: each copy
is a train query (or one of its rewordings, :func:`trainer.augment.augment`) whose input values, where the
text writes them verbatim, are replaced by *made-up* values of the same input, and the inputs with them.

The made-up values come from the split's own values only, so no held-out name leaks in: a multi-word value's
first word crossed with another value's remaining words ("Maria Aziz" x "Tom Becker" -> "Maria Becker",
"Data Platform" x "Site Reliability" -> "Data Reliability"), and, for inputs some of whose values already join
two parts with "and", two values joined ("Payroll and Site Reliability"). A made-up value never equals a
value of the split. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

JOINER = " and "


def value_pools(queries: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Input name -> the multi-word string values the queries write verbatim, in first-seen order."""
    pools: dict[str, list[str]] = {}
    for q in queries:
        text = str(q.get("query", ""))
        for name, value in (q.get("inputs") or {}).items():
            if isinstance(value, str) and " " in value.strip() and value in text:
                pool = pools.setdefault(name, [])
                if value not in pool:
                    pool.append(value)
    return pools


def made_up(pool: Sequence[str], rng: random.Random, taken: set[str], old: str = "", tries: int = 50) -> str | None:
    """A value shaped like ``pool``'s values that is none of ``taken`` and does not contain ``old``."""
    joins = any(JOINER in v for v in pool)
    for _ in range(tries):
        a, b = rng.sample(list(pool), 2) if len(pool) > 1 else (pool[0], pool[0])
        if joins and rng.random() < 0.2:
            value = f"{a}{JOINER}{b}"
        else:
            value = f"{a.split()[0]} {' '.join(b.split()[1:])}"
        if value not in taken and value.strip() and not (old and old in value):
            return value
    return None


def entity_variants(
    queries: Sequence[Mapping[str, Any]], per_query: int, *, seed: int = 0,
    pools: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Up to ``per_query`` copies of every query that writes a multi-word input value, each with new values
    (ids ``<id>~e1``, ...; ``augmented_from`` names the original). Queries writing no such value are skipped.
    ``pools`` (default: :func:`value_pools` of ``queries``) are the values new ones are made from."""
    if per_query <= 0:
        return []
    pools = value_pools(queries) if pools is None else pools
    taken = {v for pool in pools.values() for v in pool}
    out: list[dict[str, Any]] = []
    for q in queries:
        text, inputs = str(q.get("query", "")), dict(q.get("inputs") or {})
        swappable = [n for n, v in inputs.items() if n in pools and isinstance(v, str) and v in text]
        if not swappable:
            continue
        rng = random.Random(f"{seed}:{q.get('id')}")
        for n in range(1, per_query + 1):
            new_text, new_inputs, replaced = text, dict(inputs), set()
            for name in swappable:
                if inputs[name] in replaced:  # another input held the same value and took it along
                    continue
                value = made_up(pools[name], rng, taken, inputs[name])
                if value is None:
                    break
                new_text = new_text.replace(inputs[name], value)
                replaced.add(inputs[name])
                # another input holding the same value (department and department_name) follows it
                for other, old in inputs.items():
                    if old == inputs[name]:
                        new_inputs[other] = value
            else:
                out.append({**q, "id": f"{q.get('id')}~e{n}", "query": new_text, "inputs": new_inputs,
                            "augmented_from": q.get("augmented_from") or q.get("id")})
    return out
