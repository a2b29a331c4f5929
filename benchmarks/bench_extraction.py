"""How well the embedded model reads a Routine's inputs from HR test questions (hybrid mode's only model
work when every step is bound). Prints and saves docs/benchmarks/extraction.json.

    .venv/bin/python benchmarks/bench_extraction.py [--limit 40] [--free]

``--free`` turns the span/date constraints off (plain JSON schema with capped strings) for comparison.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import anyio

from routines.backends import create_backend
from routines.errors import CallerError
from routines.inputs import extract_inputs
from routines.scenario import Scenario


def _norm(value: object) -> str:
    return str(value).strip().casefold()


async def main(limit: int, free: bool, seed: int) -> dict:
    import routines.inputs as inputs_mod

    if free:  # the plain schema: capped strings, no spans
        inputs_mod.spans = lambda text, max_words=6: []  # type: ignore[assignment]
    scenario = Scenario.load("hr")
    routines = scenario.routine_map()
    queries = scenario.queries("test")
    random.Random(seed).shuffle(queries)
    queries = queries[:limit]
    backend = create_backend("local")
    fields = exact_queries = 0
    per_field: dict[str, list[int]] = {}
    started = time.perf_counter()
    failures = []
    for q in queries:
        try:
            got = await extract_inputs(routines[q["routine_id"]], q["query"], {}, backend)
        except CallerError as exc:
            got = {}
            failures.append({"id": q["id"], "error": str(exc)})
        ok_all = True
        for name, want in q["inputs"].items():
            ok = _norm(got.get(name)) == _norm(want)
            per_field.setdefault(name, [0, 0])
            per_field[name][0] += ok
            per_field[name][1] += 1
            fields += ok
            ok_all &= ok
        exact_queries += ok_all
    elapsed = time.perf_counter() - started
    total_fields = sum(n for _, n in per_field.values())
    result = {
        "constraint": "free" if free else "spans+patterns", "queries": len(queries), "seed": seed,
        "query_exact": round(exact_queries / len(queries), 3), "field_accuracy": round(fields / total_fields, 3),
        "per_field": {k: round(a / n, 3) for k, (a, n) in per_field.items()},
        "seconds_per_query": round(elapsed / len(queries), 2), "unreadable": failures[:5],
    }
    print(json.dumps(result, indent=2))
    out = Path("docs/benchmarks/extraction.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(out.read_text()) if out.exists() else {}
    saved[result["constraint"]] = result
    out.write_text(json.dumps(saved, indent=2) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--free", action="store_true")
    args = parser.parse_args()
    anyio.run(main, args.limit, args.free, args.seed)
