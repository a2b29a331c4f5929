"""Execution-engine benchmark (issue 4): orchestration overhead per step, hub cost per tool call, and prompt
tokens saved by variable memory on the HR Routines.

    .venv/bin/python benchmarks/bench_engine.py               # writes docs/benchmarks/engine.json
    .venv/bin/python benchmarks/bench_engine.py --quick       # fewer repetitions, same file

1. **Overhead per step** (target: median under 1 ms). The HR gold trajectories are replayed through the
   ``Executor`` with a ``ScriptedBackend`` (the gold calls, long values written as memory keys) against a
   ``ReplayHub`` that answers every call at once with the gold result: real Routines, real payloads (long
   member lists, policy texts), no model and no tool time. Overhead of a run = wall time minus the model's
   and the tools' measured latency, divided by its steps. Reported per mode: ``model`` (prompt building,
   parsing, checks, memory), ``hybrid`` and ``bound``.
2. **Hub versus direct call** (target: at most 1.3 times). The same tool of the same in-memory FastMCP server
   (the toy server's ``echo``, and the HR server's ``get_user_profile``) called through ``ToolHub.call``
   and directly with ``fastmcp.Client.call_tool``, interleaved; medians compared.
3. **Prompt tokens with and without variable memory** (target: at least 50% fewer). The same replays, once
   with the default threshold and once with variable memory off (threshold = infinity); every prompt the
   model would have been sent is counted with the SmolLM2 tokenizer (its chat template applied), or with
   characters / 4 when the tokenizer cannot be loaded (the JSON says which). Counted over the queries of
   the HR Routines whose outputs are long enough to be stored, with all 25 downstream tools listed in the
   prompt (``tools_in_prompt="all"``, the default) and with the Routine's tools only (``"routine"``);
   ``run_part`` leaves out the fixed head of the system prompt, which variable memory cannot shrink.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastmcp import Client

from memory.variables import VariableMemory, calls_as_written
from routines.backends.base import Message, ToolSpec
from routines.backends.scripted import ScriptedBackend
from routines.executor import Executor, ExecutorConfig, RunResult
from routines.hub import ToolHub, ToolResult
from routines.model import Routine
from scenarios.hr import build_database, create_server, load_gold, load_routines
from tests.fixtures.toy_server import create_toy_server

OUT = ROOT / "docs" / "benchmarks" / "engine.json"
NO_MEMORY = 10**12


class ReplayHub:
    """A tool hub that answers instantly with recorded results (one trajectory at a time)."""

    def __init__(self, tools: Sequence[ToolSpec]) -> None:
        self.tools = list(tools)
        self.results: list[Any] = []

    async def list_tools(self, refresh: bool = False) -> list[ToolSpec]:
        return self.tools

    async def call(self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None) -> ToolResult:
        started = time.perf_counter()
        value = self.results.pop(0)
        return ToolResult(value, "", False, time.perf_counter() - started, "hr", name)



async def replay(
    executor: Executor, hub: ReplayHub, routine: Routine, gold: dict[str, Any], mode: str
) -> tuple[RunResult, float]:
    hub.results = [c["result"] for c in gold["calls"]]
    backend = executor.backend
    if isinstance(backend, ScriptedBackend):
        backend.replies = calls_as_written(gold["calls"], executor.config.memory_threshold)
        backend.requests.clear()
    inputs = gold["inputs"] if mode != "model" else None
    started = time.perf_counter()
    result = await executor.run(routine, gold["query"], inputs=inputs, user_id=gold["user_id"], mode=mode)  # type: ignore[arg-type]
    wall = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"{gold['id']} ({mode}): {result.error}")
    return result, wall


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "mean": statistics.fmean(ordered),
        "n": len(ordered),
    }


# ---- 1. overhead per step --------------------------------------------------------------------------
async def overhead(golds: list[dict[str, Any]], routines: dict[str, Routine], tools: list[ToolSpec],
                   rounds: int) -> dict[str, Any]:
    hub = ReplayHub(tools)
    out: dict[str, Any] = {}
    for mode in ("model", "hybrid", "bound"):
        executor = Executor(hub, ScriptedBackend(), ExecutorConfig(), variables=VariableMemory)
        per_step: list[float] = []
        for _ in range(rounds):
            for gold in golds:
                result, wall = await replay(executor, hub, routines[gold["routine_id"]], gold, mode)
                spent = sum(a.tool_latency_s + a.model_latency_s for a in result.attempts)
                per_step.append((wall - spent) / len(result.attempts) * 1000)
        out[mode] = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary(per_step).items()}
        out[mode]["unit"] = "ms per step"
    return out


# ---- 2. hub versus direct ------------------------------------------------------------------------------
async def _time(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def hub_vs_direct(server: Any, tool: str, arguments: dict[str, Any], n: int) -> dict[str, Any]:
    hub_ms: list[float] = []
    direct_ms: list[float] = []
    raw_ms: list[float] = []
    async with ToolHub({"s": server}) as hub, Client(server) as client:
        await hub.list_tools()
        for _ in range(10):  # warm both paths
            await hub.call(tool, arguments)
            await client.call_tool(tool, arguments)
        for _ in range(n // 10):  # interleaved blocks so drift and load hit both alike
            hub_ms += await _time(lambda: hub.call(tool, arguments), 10)
            direct_ms += await _time(lambda: client.call_tool(tool, arguments), 10)
            raw_ms += await _time(lambda: client.call_tool_mcp(tool, arguments), 10)
    hub_med, direct_med, raw_med = (statistics.median(v) for v in (hub_ms, direct_ms, raw_ms))
    return {
        "tool": tool, "n": len(hub_ms), "hub_ms_median": round(hub_med, 4),
        "direct_call_tool_ms_median": round(direct_med, 4), "direct_call_tool_mcp_ms_median": round(raw_med, 4),
        "ratio_vs_call_tool": round(hub_med / direct_med, 3), "ratio_vs_call_tool_mcp": round(hub_med / raw_med, 3),
    }


# ---- 3. prompt tokens with and without variable memory -------------------------------------------------
def token_counter() -> tuple[Callable[[Sequence[Message]], int], str]:
    try:
        from transformers import AutoTokenizer

        from routines.backends.transformers import GGUF_FILE, chat_messages, default_model_path

        path = default_model_path()
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=GGUF_FILE)
    except Exception as exc:  # noqa: BLE001 - any failure to load means the fallback, said in the output
        print(f"SmolLM2 tokenizer not loadable ({type(exc).__name__}: {exc}); counting characters / 4")
        return (lambda messages: sum(len(m.content) for m in messages) // 4), "chars/4"

    def count(messages: Sequence[Message]) -> int:
        text = tokenizer.apply_chat_template(chat_messages(messages), tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count, "SmolLM2-135M tokenizer"


LONG_OUTPUT_CHARS = 1000


def longest_value(gold: dict[str, Any]) -> int:
    """Characters of the longest value any tool of the trajectory returned before the answer."""
    best = 0
    for call in gold["calls"][:-1]:
        result = call["result"]
        for value in result.values() if isinstance(result, dict) else [result]:
            best = max(best, len(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    return best


def long_output_routines(golds: list[dict[str, Any]]) -> list[str]:
    """Routines whose tools typically return long values: the median over their queries of the longest value
    is over LONG_OUTPUT_CHARS (member lists, attendance tables, policy texts)."""
    by_routine: dict[str, list[int]] = defaultdict(list)
    for gold in golds:
        by_routine[gold["routine_id"]].append(longest_value(gold))
    return sorted(r for r, sizes in by_routine.items() if statistics.median(sizes) > LONG_OUTPUT_CHARS)


async def prompt_tokens(golds: list[dict[str, Any]], routines: dict[str, Routine], tools: list[ToolSpec]) -> dict[str, Any]:
    """Prompt tokens of every model call of the replays, with variable memory (default threshold) and without
    it. Two tool listings: all downstream tools (the default) and the Routine's tools only. ``run_part``
    leaves out the system prompt's fixed head (role, rules, tools, Routine), the same in both runs: what is
    left (variables, observations, calls) is what variable memory acts on."""
    count, counter = token_counter()
    long_output = long_output_routines(golds)
    hub = ReplayHub(tools)
    totals: dict[str, dict[str, dict[str, int]]] = {
        listing: defaultdict(lambda: {"with": 0, "without": 0, "run_part_with": 0, "run_part_without": 0,
                                      "queries": 0, "prompts": 0})
        for listing in ("all", "routine")
    }
    for gold in golds:
        routine = routines[gold["routine_id"]]
        for listing in ("all", "routine"):
            counts: dict[str, int] = {}
            stored = False
            for label, threshold in (("with", ExecutorConfig().memory_threshold), ("without", NO_MEMORY)):
                backend = ScriptedBackend()
                config = ExecutorConfig(memory_threshold=threshold, tools_in_prompt=listing)  # type: ignore[arg-type]
                executor = Executor(hub, backend, config, variables=VariableMemory)
                result, _ = await replay(executor, hub, routine, gold, "model")
                head = backend.requests[0][0].content.rsplit("<variables>", 1)[0]
                fixed = count([Message("system", head)])
                counts[label] = sum(count(request) for request in backend.requests)
                counts["run_part_" + label] = counts[label] - fixed * len(backend.requests)
                stored = stored or any(c.variables_before for c in result.calls)
                prompts = len(backend.requests)
            if not stored:
                continue  # no output of this query is long: variable memory does not apply
            keys = [gold["routine_id"], "all"] + (["long_output"] if gold["routine_id"] in long_output else [])
            for key in keys:
                row = totals[listing][key]
                for name, value in counts.items():
                    row[name] += value
                row["queries"] += 1
                row["prompts"] += prompts
    out: dict[str, Any] = {"counter": counter, "long_output_routines": long_output,
                           "long_output_rule": f"median over the queries of the longest tool-output value > "
                                               f"{LONG_OUTPUT_CHARS} characters"}
    for listing, rows in totals.items():
        section: dict[str, Any] = {"routines": {}}
        for key, row in sorted(rows.items()):
            entry = {**row, "reduction": round(1 - row["with"] / row["without"], 4),
                     "run_part_reduction": round(1 - row["run_part_with"] / row["run_part_without"], 4)}
            if key in ("all", "long_output"):
                section[key] = entry
            else:
                section["routines"][key] = entry
        out[f"tools_{listing}"] = section
    return out


# ---- main -------------------------------------------------------------------------------------------
async def main(args: argparse.Namespace, previous: dict[str, Any]) -> dict[str, Any]:
    parts = set(args.parts.split(","))
    routines = {r.id or "": r for r in load_routines()}
    gold_all = load_gold(args.split)
    over, hub_cost, tokens = previous.get("overhead_per_step"), previous.get("hub_vs_direct"), previous.get("prompt_tokens")
    with tempfile.TemporaryDirectory() as tmp:
        print("building the HR database ...", flush=True)
        db = build_database(Path(tmp) / "hr.sqlite")
        hr_server = create_server(db)
        async with ToolHub({"hr": hr_server}) as hub:
            tools = await hub.list_tools()
        if "overhead" in parts:
            print("1. orchestration overhead per step ...", flush=True)
            one_per_variant = list({g["variant"]: g for g in gold_all}.values())
            over = await overhead(one_per_variant, routines, tools, rounds=3 if args.quick else 20)
            print(json.dumps(over, indent=1))
        if "hub" in parts:
            print("2. hub versus direct call ...", flush=True)
            n = 100 if args.quick else 500
            hub_cost = [await hub_vs_direct(create_toy_server(), "echo", {"value": "x"}, n),
                        await hub_vs_direct(hr_server, "get_user_profile", {"user_id": gold_all[0]["user_id"]}, n)]
            print(json.dumps(hub_cost, indent=1))
    if "tokens" in parts:
        print("3. prompt tokens with and without variable memory ...", flush=True)
        tokens = await prompt_tokens(gold_all[:: 4 if args.quick else 1], routines, tools)
        print(json.dumps({k: v.get("long_output", v) if isinstance(v, dict) else v for k, v in tokens.items()},
                         indent=1))
    if over is None or hub_cost is None or tokens is None:
        raise SystemExit(f"no earlier numbers in {args.out} for the parts not run; run all parts once")
    return {
        "command": "python benchmarks/bench_engine.py" + (" --quick" if args.quick else "")
        + (f" --split {args.split}" if args.split != "test" else ""),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_1m": round(os.getloadavg()[0], 1)},
        "split": args.split,
        "overhead_per_step": over,
        "hub_vs_direct": hub_cost,
        "prompt_tokens": tokens,
        "targets": {
            "overhead_median_ms_below": 1.0, "hub_ratio_at_most": 1.3, "token_reduction_at_least": 0.5,
            "met": {
                "overhead": over["model"]["median"] < 1.0,
                "hub": all(h["ratio_vs_call_tool"] <= 1.3 for h in hub_cost),
                "tokens_all_tools_listed": tokens["tools_all"]["long_output"]["reduction"] >= 0.5,
                "tokens_routine_tools_listed": tokens["tools_routine"]["long_output"]["reduction"] >= 0.5,
                "tokens_run_part": tokens["tools_all"]["long_output"]["run_part_reduction"] >= 0.5,
            },
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and queries (a smoke run)")
    parser.add_argument("--split", default="test", choices=["train", "test"], help="gold split to replay")
    parser.add_argument("--parts", default="overhead,hub,tokens",
                        help="comma-separated subset to measure; the others are kept from --out")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the JSON")
    ns = parser.parse_args()
    earlier = json.loads(ns.out.read_text(encoding="utf-8")) if ns.out.exists() else {}
    result = anyio.run(main, ns, earlier)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"targets met: {result['targets']['met']}; written to {ns.out}")
