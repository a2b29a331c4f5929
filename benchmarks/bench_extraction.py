"""How well the embedded model reads a Routine's inputs from HR test questions (hybrid mode's only model
work when every step is bound). Prints and saves docs/benchmarks/extraction.json.

    .venv/bin/python benchmarks/bench_extraction.py [--limit 40] [--free] [--adapter routines/adapters/hr|none]

``--free`` turns the span/date constraints off (plain JSON schema with capped strings) for comparison;
``--adapter`` picks the LoRA adapter (default: the base model alone, ``none``); ``--limit 200`` is the whole
test set. Results are saved per constraint and adapter.

A field is right when it equals what the question writes (:func:`routines.inputs.readable_inputs`: null for
a value it never states, such as the asker's own name in "What is my salary?"; the engine then leaves that
value to the model's steps). ``query_exact_vs_gold_inputs`` compares with the gold inputs instead, which such
a question can never match.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import date
from pathlib import Path

import anyio

from routines.backends import create_backend
from routines.errors import CallerError
from routines.inputs import extract_inputs, missing_inputs, readable_inputs
from routines.scenario import Scenario


def _norm(value: object) -> str:
    return str(value).strip().casefold()


async def main(limit: int, free: bool, seed: int, adapter: str, dtype: str) -> dict:
    import routines.inputs as inputs_mod

    scenario = Scenario.load("hr")
    routines = scenario.routine_map()
    today = date.fromisoformat(scenario.today) if scenario.today else None
    queries = scenario.queries("test")
    random.Random(seed).shuffle(queries)
    queries = queries[:limit]
    # what the question writes: null for a value it never states ("What is my salary?"); read before --free
    # turns the spans off, so that both constraints are scored against the same targets
    targets = {}
    for q in queries:
        routine = routines[q["routine_id"]]
        targets[q["id"]] = readable_inputs(routine, q["query"], q["inputs"], missing_inputs(routine, {}), today)
    if free:  # the plain schema: capped strings, no spans
        inputs_mod.spans = lambda text, max_words=6: []  # type: ignore[assignment]
    options = {"dtype": dtype} | ({} if adapter == "none" else {"adapter": adapter})
    backend = create_backend("local", **options)
    fields = exact_queries = exact_gold = 0
    per_field: dict[str, list[int]] = {}
    started = time.perf_counter()
    failures = []
    wrong: list[dict] = []
    for q in queries:
        try:
            got = await extract_inputs(routines[q["routine_id"]], q["query"], {}, backend, today=today)
        except CallerError as exc:
            got = {}
            failures.append({"id": q["id"], "error": str(exc)})
        readable = targets[q["id"]]
        exact_gold += all(_norm(got.get(n)) == _norm(v) for n, v in q["inputs"].items())
        ok_all = True
        for name, want in readable.items():
            ok = _norm(got.get(name)) == _norm(want)
            if not ok:
                wrong.append({"id": q["id"], "query": q["query"], "field": name, "want": want, "got": got.get(name)})
            per_field.setdefault(name, [0, 0])
            per_field[name][0] += ok
            per_field[name][1] += 1
            fields += ok
            ok_all &= ok
        exact_queries += ok_all
    elapsed = time.perf_counter() - started
    total_fields = sum(n for _, n in per_field.values())
    result = {
        "constraint": "free" if free else "spans+patterns", "adapter": adapter, "dtype": dtype,
        "queries": len(queries), "seed": seed,
        "query_exact": round(exact_queries / len(queries), 3),
        "query_exact_vs_gold_inputs": round(exact_gold / len(queries), 3),
        "field_accuracy": round(fields / total_fields, 3),
        "per_field": {k: round(a / n, 3) for k, (a, n) in per_field.items()},
        "seconds_per_query": round(elapsed / len(queries), 2), "unreadable": failures[:5],
        "wrong": wrong,
    }
    print(json.dumps(result, indent=2))
    out = Path("docs/benchmarks/extraction.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(out.read_text()) if out.exists() else {}
    saved[result["constraint"] + ("" if adapter == "none" else f" + {Path(adapter).name} adapter")] = result
    out.write_text(json.dumps(saved, indent=2) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--free", action="store_true")
    parser.add_argument("--adapter", default="none")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    anyio.run(main, args.limit, args.free, args.seed, args.adapter, args.dtype)
