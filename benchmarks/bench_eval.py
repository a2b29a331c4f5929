"""Evaluation speed with the embedded model: per-step samples per second, naive versus prefix reuse versus
batched generation, and the tool-order shuffle per query versus per sample.

    .venv/bin/python benchmarks/bench_eval.py --scenario hr --queries 6 [--constrain] [--out FILE]

The same seeded set of whole queries (all their steps) goes through each mode on a fresh backend (the model
is loaded once and shared):

- ``naive``: one ``complete`` per sample, every prompt prefilled from scratch (``prefix_reuse=False``);
- ``prefix``: one ``complete`` per sample in query/step order (tools per Routine); the backend keeps the KV
  cache of the last prompt and answer, so a step prefills only what is new since the previous one;
- ``batched``: ``evals.runner.run_samples`` (``complete_batch`` in chunks: shared-prefix groups decoded
  together), with the tool order shuffled per Routine (the harness's default), per query and per sample.

``naive`` and ``batched-per-sample`` run only the first ``--few`` samples (each prefills a whole prompt).
``--workers N`` runs the batched modes on N worker processes (``ProcessBackend``, one torch thread each
unless ``--threads``) as lanes of ``run_samples``; the workers load before the clock starts.
``--routine`` keeps the queries of one Routine: a full run sends the samples of a Routine together, so this
is the steady state of a long run.

Prints a table and writes the numbers as JSON (default ``benchmarks/results/bench_eval.json``), with the
minutes the whole test set would take at each rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evals.checker import check_call
from evals.configs import CONFIGS, RoutineCatalog, build_samples
from evals.decompose import Sample, load_trajectories, select_queries
from evals.runner import RunOptions, run_samples, tool_constraint
from routines.backends import create_backend
from routines.backends.process import ProcessBackend, close_all, start_all
from routines.backends.transformers import TransformersBackend, default_threads
from routines.scenario import Scenario
from server.settings import Settings


async def sequential(samples: list[Sample], backend: TransformersBackend, constrain: bool, max_tokens: int) -> list[str]:
    ordered = sorted(samples, key=lambda s: (s.query_id, s.index))
    outputs = []
    for s in ordered:
        c = tool_constraint(s.tools) if constrain else None
        outputs.append((await backend.complete(s.messages(), constraint=c, max_tokens=max_tokens)).text)
    return outputs


async def measure(name: str, samples: list[Sample], backend: Any, args: argparse.Namespace,
                  batched: bool) -> dict[str, Any]:
    """One mode's row; ``backend`` is one backend or, batched, a list of worker lanes."""
    started = time.perf_counter()
    if batched:
        options = RunOptions(constrain=args.constrain, max_tokens=args.max_tokens, chunk=args.chunk, progress=False)
        results = await run_samples(samples, backend, options)
        outputs = [r.output for r in sorted(results, key=lambda r: (r.sample.query_id, r.sample.index))]
        tokens = sum(r.output_tokens for r in results)
    else:
        outputs = await sequential(samples, backend, args.constrain, args.max_tokens)
        tokens = None
    seconds = time.perf_counter() - started
    ordered = sorted(samples, key=lambda s: (s.query_id, s.index))
    right = sum(check_call(o, s.expected, s.tools, s.free_text).overall for o, s in zip(outputs, ordered, strict=True))
    row = {"mode": name, "samples": len(samples), "seconds": round(seconds, 1),
           "steps_per_s": round(len(samples) / seconds, 4), "output_tokens": tokens,
           "overall": round(right / len(samples), 3), "load_average": round(os.getloadavg()[0], 1)}
    row["minutes_for_test_set"] = round(args.test_steps / row["steps_per_s"] / 60, 1)
    print(f"{name:24} {len(samples):4} samples {seconds:7.1f} s  {row['steps_per_s']:.3f} steps/s  "
          f"-> {row['minutes_for_test_set']:.0f} min for {args.test_steps} steps  (overall {row['overall']:.2f}, "
          f"load {row['load_average']})", flush=True)
    row["outputs"] = outputs
    return row


def first(samples: list[Sample], n: int) -> list[Sample]:
    return sorted(samples, key=lambda s: (s.query_id, s.index))[:n]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    data_dir = Path(args.data_dir or settings.data_dir).expanduser()
    scenario = Scenario.load(args.scenario)
    tset = await load_trajectories(scenario, args.split, data_dir, memory_threshold=settings.memory_threshold)
    pool = [t for t in tset.trajectories if args.routine in (None, t.routine_id)]
    chosen = select_queries(pool, args.steps, args.seed)
    catalog = RoutineCatalog.from_scenario(scenario)
    config = CONFIGS[args.config]
    sets = {shuffle: build_samples(config, chosen, tset.tools, catalog, seed=args.seed, shuffle=shuffle)
            for shuffle in ("per-routine", "per-query", "per-sample")}
    modes = args.modes.split(",")
    threads = args.threads or (1 if args.workers > 1 else default_threads())
    if args.workers == 1 or not all(m.startswith("batched-") for m in modes):  # an in-process model is used
        started = time.perf_counter()
        _ = TransformersBackend(threads=args.threads, dtype=args.dtype).loaded
        print(f"model loaded in {time.perf_counter() - started:.1f} s", flush=True)
    print(f"{len(sets['per-query'])} samples of {len(chosen)} queries, config {config.name}, "
          f"{'constrained' if args.constrain else 'free'} decoding, {args.workers} worker(s)", flush=True)
    rows = []
    for mode in modes:
        if mode.startswith("batched-"):
            shuffle = mode.removeprefix("batched-")
            picked = sets[shuffle] if shuffle != "per-sample" else first(sets[shuffle], args.few)
            if args.workers == 1:
                backend = TransformersBackend(max_batch=args.max_batch, threads=args.threads, dtype=args.dtype)
                rows.append(await measure(f"batched, {shuffle} tools", picked, backend, args, True))
                continue
            lanes = [ProcessBackend(create_backend, kind="local", max_batch=args.max_batch, threads=threads,
                                    dtype=args.dtype) for _ in range(args.workers)]
            try:
                started = time.perf_counter()
                await start_all(lanes)  # fresh workers per mode, loaded before the clock starts
                print(f"{args.workers} workers loaded in {time.perf_counter() - started:.1f} s", flush=True)
                rows.append(await measure(f"batched, {shuffle} tools, {args.workers} workers", picked, lanes, args,
                                          True))
            finally:
                await close_all(lanes)
        elif mode == "prefix":
            rows.append(await measure("prefix reuse, per-routine", sets["per-routine"], TransformersBackend(threads=args.threads, dtype=args.dtype), args, False))
        elif mode == "naive":
            rows.append(await measure("naive", first(sets["per-routine"], args.few), TransformersBackend(prefix_reuse=False, threads=args.threads, dtype=args.dtype), args, False))
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    for r in rows:
        r.pop("outputs")
    return {
        "scenario": scenario.name, "split": args.split, "config": config.name, "constrained": args.constrain,
        "routine": args.routine, "queries": len(chosen), "samples": len(sets["per-query"]), "seed": args.seed, "max_tokens": args.max_tokens,
        "max_batch": args.max_batch, "chunk": args.chunk, "threads": threads, "workers": args.workers,
        "dtype": args.dtype, "machine": platform.machine(),
        "command": "python benchmarks/bench_eval.py " + " ".join(sys.argv[1:]), "rows": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="hr")
    parser.add_argument("--split", default="test")
    parser.add_argument("--config", default="routine_branch")
    parser.add_argument("--steps", type=int, default=24, help="At least this many steps (whole queries).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--constrain", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=RunOptions().max_tokens)
    parser.add_argument("--max-batch", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None, help="Torch threads (default: the backend's).")
    parser.add_argument("--dtype", default="float32", help="Embedded model numerics: float32, bfloat16 or auto.")
    parser.add_argument("--workers", type=int, default=1,
                        help="Batched modes: worker processes, each with its own model (1 thread unless --threads).")
    parser.add_argument("--chunk", type=int, default=RunOptions().chunk)
    parser.add_argument("--modes", default="batched-per-routine,batched-per-query,batched-per-sample,prefix,naive")
    parser.add_argument("--few", type=int, default=8,
                        help="Samples for the slow modes (naive, batched per-sample): the first ones in query order.")
    parser.add_argument("--routine", default=None, help="Only queries of this Routine (as one chunk of a full run).")
    parser.add_argument("--test-steps", type=int, default=1150, help="Steps of the full test set, to extrapolate.")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_eval.json")
    ns = parser.parse_args()
    if ns.workers < 1:
        parser.error("--workers must be at least 1")
    result = anyio.run(main, ns)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {ns.out}")
