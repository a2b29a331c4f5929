"""Model-mode run latency of the embedded executor on HR test queries, warm and cold.

    .venv/bin/python benchmarks/bench_run_latency.py [--queries 50] [--adapter routines/adapters/hr] \
        [--constrain next] [--dtype bfloat16] [--out docs/benchmarks/run_latency.json]

Cold start: a fresh process (``routine run``'s path: load the model and adapter, connect the HR server, run one
query), measured from the process start to its answer. Warm: ``--queries`` test queries (a seeded sample) run
one after another in one process, each from the query to the answer, the model loaded once. Every run is
also scored: it reached the finish step and its answer equals the gold answer (task success).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def warm_runs(args: argparse.Namespace) -> dict[str, Any]:
    from evals.gold import answers_match
    from memory.variables import VariableMemory
    from routines.backends import create_backend
    from routines.executor import Executor, ExecutorConfig
    from routines.hub import ToolHub
    from routines.scenario import Scenario

    scenario = Scenario.load("hr")
    gold = scenario.gold("test")
    picked = random.Random(args.seed).sample(gold, min(args.queries, len(gold)))
    routines = scenario.routine_map()
    adapter = None if args.adapter == "none" else args.adapter
    started = time.perf_counter()
    backend = create_backend("local", adapter=adapter, dtype=args.dtype)
    backend.loaded  # noqa: B018 - load now, not inside the first run
    load_s = time.perf_counter() - started
    rows = []
    config = ExecutorConfig(mode="model", constrain=args.constrain, tools_in_prompt="routine", today=scenario.today)
    async with ToolHub.from_config(scenario.servers(Path(args.data_dir).expanduser())) as hub:
        executor = Executor(hub, backend, config, variables=VariableMemory)
        for record in picked:
            t0 = time.perf_counter()
            result = await executor.run(routines[record["routine_id"]], record["query"], user_id=record["user_id"])
            seconds = time.perf_counter() - t0
            rows.append({"id": record["id"], "seconds": round(seconds, 3), "finished": result.ok,
                         "success": bool(result.ok and answers_match(result.answer, record.get("answer"))),
                         "model_calls": sum(1 for a in result.attempts if a.source == "model"),
                         "error": result.error})
            print(f"{record['id']}: {seconds:5.2f} s  {'ok' if rows[-1]['success'] else 'FAIL'}", flush=True)
    times = [r["seconds"] for r in rows]
    return {"load_s": round(load_s, 2), "runs": len(rows), "p50_s": round(statistics.median(times), 3),
            "p95_s": round(percentile(times, 0.95), 3), "mean_s": round(statistics.fmean(times), 3),
            "success": round(sum(r["success"] for r in rows) / len(rows), 4), "rows": rows}


def cold_start(args: argparse.Namespace) -> float:
    record = _first_test_query()
    cmd = [sys.executable, "-m", "server", "run", "--routine", str(ROOT / "scenarios/hr/routines" /
           f"{record['routine_id']}.json"), "--query", record["query"], "--user-id", record["user_id"],
           "--mode", "model", "--constrain", args.constrain, "--adapter", args.adapter,
           "--servers", str(Path(args.data_dir).expanduser() / "servers.json")]
    started = time.perf_counter()
    subprocess.run(cmd, check=False, capture_output=True, cwd=ROOT, env={
        **__import__("os").environ, "ROUTINE_LOCAL_DTYPE": args.dtype, "ROUTINE_DATA_DIR": args.data_dir})
    return time.perf_counter() - started


def _first_test_query() -> dict[str, Any]:
    from routines.scenario import Scenario

    return Scenario.load("hr").gold("test")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--adapter", default="routines/adapters/hr")
    parser.add_argument("--constrain", default="next")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="~/.routine")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/run_latency.json")
    args = parser.parse_args()
    home = Path(args.data_dir).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    from routines.scenario import Scenario

    scenario = Scenario.load("hr")
    (home / "servers.json").write_text(json.dumps(scenario.servers(home)), encoding="utf-8")
    from scenarios.hr import build_database

    if not (home / "hr.sqlite").exists():
        build_database(home / "hr.sqlite")
    warm = anyio.run(warm_runs, args)
    cold = None if args.no_cold else round(cold_start(args), 2)
    out = {"command": "benchmarks/bench_run_latency.py " + " ".join(sys.argv[1:]), "adapter": args.adapter,
           "constrain": args.constrain, "dtype": args.dtype, "cold_start_s": cold,
           **{k: v for k, v in warm.items() if k != "rows"}, "rows": warm["rows"]}
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
