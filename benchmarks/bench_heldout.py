"""Retrieval on questions no template wrote: a held-out HR set (``--heldout``, default the newest, never learned:
scenarios/hr/data/heldout_retrieval_v5.jsonl, in-scope questions written apart from the query templates and
unrelated and uncovered HR requests that must be refused) and the template test split, for each way of setting
up the store.

    .venv/bin/python benchmarks/bench_heldout.py                       # every set-up, about 5 minutes here
    .venv/bin/python benchmarks/bench_heldout.py --setups routines,examples

Set-ups, each adding to the one before (what `routine demo` does is the last):
- ``routines``: the seven HR Routines only;
- ``examples``: plus the train questions and the written ones as example questions (``routine routines examples
  import``), and the in-scope questions of the used held-out sets the scenario lists in ``learned_questions``;
- ``negatives``: plus the negative questions of scenarios/hr/data/negatives_train.jsonl (``routine routines
  negatives import``) and the used held-out sets' questions to refuse (``examples import --with-negatives``
  does both for a labelled set);
- ``tuned``: plus the embedding adapter tuned on all of that (``routine routines tune``).

It uses only the public store and retriever API (``ProcedureStore``, ``Retriever.retrieve``), so the same file
measures older code too: the "before" numbers in docs/procedure-memory.md come from running it in a worktree of
the commit before issue 17 with ``--setups routines,examples``. Numbers go to ``--out``
(docs/benchmarks/retrieval_heldout.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parents[1] / "scenarios" / "hr" / "data"

SETUPS = ("routines", "examples", "negatives", "tuned")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(retriever: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Right Routine returned, best candidate right, false refusals (in-scope rows), and refusals of the rows
    without a Routine by kind; the misses listed."""
    counts: dict[str, int] = {"in_scope": 0, "right": 0, "best_right": 0, "false_refusal": 0}
    refused: dict[str, list[int]] = {}
    misses = []
    latencies = []
    for row in rows:
        t = time.perf_counter()
        result = retriever.retrieve(row["query"])
        latencies.append(time.perf_counter() - t)
        best = result.candidates[0].routine_id if result.candidates else None
        got = None if result.routine is None else result.routine.id
        if row.get("routine_id"):
            counts["in_scope"] += 1
            counts["right"] += got == row["routine_id"]
            counts["best_right"] += best == row["routine_id"]
            counts["false_refusal"] += got is None
            if got != row["routine_id"]:
                misses.append({"query": row["query"], "expected": row["routine_id"], "got": got, "best": best,
                               "score": round(result.score, 3)})
        else:
            kind = row.get("kind", "refuse")
            refused.setdefault(kind, []).append(got is None)
            if got is not None:
                misses.append({"query": row["query"], "expected": None, "kind": kind, "got": got,
                               "score": round(result.score, 3)})
    n = max(counts["in_scope"], 1)
    out: dict[str, Any] = {
        "in_scope": counts["in_scope"],
        "right": round(counts["right"] / n, 4),
        "best_candidate_right": round(counts["best_right"] / n, 4),
        "false_refusals": round(counts["false_refusal"] / n, 4),
    }
    for kind, flags in refused.items():
        out[f"{kind}_refused"] = round(sum(flags) / len(flags), 4)
        out[f"{kind}_n"] = len(flags)
    latencies.sort()
    out["retrieve_p50_ms"] = round(latencies[len(latencies) // 2] * 1000, 1)
    out["misses"] = misses
    return out


def build(setup: str, workdir: Path, train_queries: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A fresh store set up as ``setup`` says, and its retriever."""
    from memory.embeddings import Embedder
    from memory.questions import Negative
    from memory.retrieval import Retriever
    from memory.store import ProcedureStore
    from scenarios.hr import load_routines

    store = ProcedureStore(workdir / f"{setup}.sqlite")
    store.save_many(load_routines())
    info: dict[str, Any] = {}
    level = SETUPS.index(setup)
    learned = [read_jsonl(DATA.parent / p) for p in json.loads((DATA.parent / "scenario.json").read_text(
        encoding="utf-8")).get("learned_questions", [])]  # used held-out sets, learned as `routine demo` does
    if level >= 1:
        info["examples"] = store.import_examples(train_queries).added
        if (DATA / "examples.jsonl").exists():  # the questions a deployer wrote per Routine
            info["examples"] += store.import_examples(DATA / "examples.jsonl").added
        info["examples"] += store.add_examples(
            [(r["routine_id"], r["query"]) for rows in learned for r in rows if r.get("routine_id")], source="learned").added
    if level >= 2:
        info["negatives"] = store.import_negatives(DATA / "negatives_train.jsonl").added
        info["negatives"] += store.add_negatives(
            [Negative(r["query"], r["kind"]) for rows in learned for r in rows if not r.get("routine_id")],
            source="learned").added
    embedder = Embedder()
    if level >= 3:
        from memory.tuning import embedder_for, tune

        result = tune(store)
        info["tuned"] = {"name": result.name, "seconds": result.seconds, "steps": result.steps}
        embedder = embedder_for(store)
    retriever = Retriever(store, embedder)
    info["threshold"] = retriever.threshold
    return store, retriever, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--heldout", default=str(DATA / "heldout_retrieval_v5.jsonl"))
    parser.add_argument("--label", default="", help="what code this measures (default: the git commit)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "retrieval_heldout.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared CPU)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from scenarios.hr import load_queries

    heldout = read_jsonl(Path(args.heldout))
    learned = json.loads((DATA.parent / "scenario.json").read_text(encoding="utf-8")).get("learned_questions", [])
    if Path(args.heldout).name in {Path(p).name for p in learned}:
        print(f"warning: the store learns from {Path(args.heldout).name} (learned_questions): these numbers are "
              "in-sample, not held out", file=sys.stderr)
    test = load_queries("test")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    results: dict[str, Any] = {
        "command": "python benchmarks/bench_heldout.py " + " ".join(sys.argv[1:]),
        "code": args.label or commit,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "heldout": {"file": Path(args.heldout).name, "rows": len(heldout)},
        "setups": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for setup in args.setups.split(","):
            t = time.perf_counter()
            store, retriever, info = build(setup, Path(tmp), DATA / "queries_train.jsonl")
            row = {**info, "heldout": evaluate(retriever, heldout), "template_test": evaluate(retriever, test)}
            row["seconds"] = round(time.perf_counter() - t, 1)
            store.close()
            results["setups"][setup] = row
            summary = {k: v for k, v in row["heldout"].items() if k != "misses"}
            print(json.dumps({setup: {"heldout": summary, "template_test_right": row["template_test"]["right"]}}),
                  flush=True)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
