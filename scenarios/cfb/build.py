"""The build: ``python -m scenarios.cfb --build`` turns the installed package's data into a scenario folder.

Written to ``scenarios/cfb/data/`` (git-ignored; ``--out DIR`` for another folder), every file a function of
the package's data alone, so a rebuild writes identical files:

- ``scenario.json``: the manifest of the built folder (``routine ... --scenario <folder>`` works as well as
  ``--scenario cfb``);
- ``tools.json``: the 40 tools as MCP tool schemas (``x-source-name``: the benchmark's name), a parameter's
  type widened where the recorded calls give it another (``build.json`` lists them);
- ``replay.sqlite``: the recorded responses by (case, tool, arguments), for the replay server;
- ``routines/cfb.NNNN.json``: one Routine per sample;
- ``queries_{train,test}.jsonl`` and ``gold_{train,test}.jsonl``: query records, and the calls of each
  Routine run in bound mode by the executor through the replay server (the record plus ``calls``);
- ``build.json``: the package version, the split and the counts.

The split is by tool sequence: samples that call the same tools in the same order land on the same side,
so no test plan is seen in training, and a sequence goes to test only while every one of its tools still
has a training sample. Sequences are drawn in a seeded order until the test set holds ``TEST_SIZE`` samples.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from routines.hub import ToolHub
from scenarios.bound import bound_executor, run_bound
from scenarios.cfb.routines import Built, build_sample
from scenarios.cfb.server import ReplayStore, create_server
from scenarios.cfb.source import load_samples, tool_schemas, version, widen

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).parent / "data"
SPLITS = ("train", "test")
TEST_SIZE = 192
SEED = 18
MANIFEST = {
    "name": "cfb",
    "description": "ComplexFuncBench (nestful-wrapper): 1,000 travel-booking queries, one Routine each, "
                   "answered by a replay server from the recorded responses.",
    "routines": "routines",
    "queries": "queries_{split}.jsonl",
    "gold": "gold_{split}.jsonl",
    "servers": {"mcpServers": {"cfb": {"command": "{python}", "args": ["-m", "scenarios.cfb", "--data", "{scenario_dir}"]}}},
}


def split_by_sequence(built: Sequence[Built], test_size: int = TEST_SIZE, seed: int = SEED) -> dict[str, list[Built]]:
    """Train and test by tool sequence (see the module docstring)."""
    groups: dict[tuple[str, ...], list[Built]] = {}
    for b in built:
        groups.setdefault(b.tools, []).append(b)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    train_tools = Counter(t for b in built for t in set(b.tools))
    test: set[tuple[str, ...]] = set()
    size = 0
    for seq in order:
        members = groups[seq]
        if size + len(members) > test_size:
            continue
        left = train_tools.copy()
        for b in members:
            left.subtract(set(b.tools))
        if any(left[t] <= 0 for t in seq):
            continue
        train_tools, size = left, size + len(members)
        test.add(seq)
        if size == test_size:
            break
    return {"train": [b for b in built if b.tools not in test], "test": [b for b in built if b.tools in test]}


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


async def gold_calls(out: Path, built: Sequence[Built]) -> dict[str, list[dict[str, Any]]]:
    """Each sample's Routine run in bound mode through the replay server; the calls as the tool got them."""
    out_calls: dict[str, list[dict[str, Any]]] = {}
    async with ToolHub.from_config({"mcpServers": {"cfb": create_server(out)}}) as hub:
        executor = bound_executor(hub)
        for b in built:
            result = await run_bound(executor, b.routine, b.query, b.case)
            got = [(c.tool, c.resolved_arguments) for c in result.calls]
            want = [(c["name"], c["arguments"]) for c in b.calls]
            if got != want:
                raise RuntimeError(f"{b.case}: the bound run made {got}, the benchmark recorded {want}")
            out_calls[b.case] = [{"step": c.step, "name": c.tool, "arguments": c.resolved_arguments, "free_text": []}
                                 for c in result.calls]
    return out_calls


def build(out: Path = DEFAULT_OUT, limit: int | None = None, test_size: int = TEST_SIZE) -> dict[str, Any]:
    """Build the scenario folder ``out`` from the installed package (``limit`` evenly spaced samples only, for
    tests; the test set then scaled down in proportion). Returns the counts written to ``build.json``."""
    samples = load_samples()
    step = max(1, len(samples) // limit) if limit else 1
    chosen = list(enumerate(samples))[::step][:limit] if limit else list(enumerate(samples))
    tools = tool_schemas(samples)
    schemas = {t["name"]: t["inputSchema"] for t in tools}
    built = [build_sample(i, s, schemas) for i, s in chosen]
    widened = widen(tools, [c for b in built for c in b.calls])
    if limit:
        test_size = max(1, round(test_size * len(built) / len(samples)))
    parts = split_by_sequence(built, test_size=test_size)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.json").write_text(json.dumps(MANIFEST, indent=2) + "\n", encoding="utf-8")
    (out / "tools.json").write_text(json.dumps(tools, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    ReplayStore.write(out / "replay.sqlite", [(b.case, k, c["name"], c["arguments"], c["response"])
                                              for b in built for k, c in enumerate(b.calls)])
    folder = out / "routines"
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    for b in built:
        (folder / f"{b.routine.id}.json").write_text(b.routine.model_dump_json(indent=1, exclude_none=True) + "\n",
                                                     encoding="utf-8")
    calls = anyio.run(gold_calls, out, built)
    counts: dict[str, Any] = {"package": f"nestful-wrapper {version()}", "samples": len(built), "seed": SEED,
                              "widened_parameters": widened}
    for split in SPLITS:
        records = [{**b.query, "split": split} for b in parts[split]]
        (out / f"queries_{split}.jsonl").write_text("".join(_dumps(r) + "\n" for r in records), encoding="utf-8")
        (out / f"gold_{split}.jsonl").write_text("".join(_dumps({**r, "calls": calls[r["id"]]}) + "\n" for r in records),
                                                 encoding="utf-8")
        counts[split] = {"samples": len(records), "calls": sum(len(calls[r["id"]]) for r in records),
                         "sequences": len({b.tools for b in parts[split]}), "ids": [r["id"] for r in records]}
    (out / "build.json").write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")
    return counts
