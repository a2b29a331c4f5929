"""Numbers of the built CFB scenario for docs/cfb-scenario.md: ``python -m scenarios.cfb.stats [--tokens]``.

Variable memory: for every call, the values it takes from earlier results (benchmark references and copied
literals) are checked against what the model saw of those results under today's
:class:`memory.variables.VariableMemory` (each result under ``memory_<tool>``, long top-level fields under
keys with an 80-character preview): a value is *visible* when its text appears in an earlier observation
or when it is a stored value the model can pass by key. A call with a value that is neither needs a value
the model never sees.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from memory.variables import VariableMemory
from routines.prompt import observation_text
from scenarios.cfb.routines import Built, build_sample
from scenarios.cfb.source import load_samples, tool_schemas


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value, json.dumps(value, ensure_ascii=False)]
    return [json.dumps(value, ensure_ascii=False), json.dumps(value, ensure_ascii=False, separators=(",", ":"))]


def memory_visibility(built: Sequence[Built], threshold: int = 256, nested: bool = False) -> dict[str, Any]:
    """Calls and values that need an earlier value the model never sees, and observation sizes."""
    calls = needing = hidden_calls = values = hidden_values = 0
    obs_chars: list[int] = []
    for b in built:
        memory = VariableMemory(threshold=threshold, nested=nested)
        seen: list[str] = []
        for call, binds in zip(b.calls, b.bindings, strict=True):
            calls += 1
            needed = [x.value for x in binds.values() if x.kind in ("ref", "copy")]
            needing += bool(needed)
            hidden = 0
            for value in needed:
                values += 1
                keyed = memory.encode(value) != value
                if not keyed and not any(t in text for t in _texts(value) for text in seen):
                    hidden += 1
            hidden_values += hidden
            hidden_calls += bool(hidden)
            shown = memory.observe(call["response"], hint=call["name"])
            text = observation_text(shown.key, shown.shown, shown.new_keys)
            seen.append(text)
            obs_chars.append(len(text))
    return {"threshold": threshold, "nested": nested, "calls": calls, "calls_taking_earlier_values": needing,
            "calls_with_hidden_value": hidden_calls, "values": values, "hidden_values": hidden_values,
            "observation_chars_median": statistics.median(obs_chars),
            "observation_chars_p95": sorted(obs_chars)[int(0.95 * (len(obs_chars) - 1))], "observation_chars_max": max(obs_chars)}


def routine_lengths(built: Sequence[Built], count: Callable[[str], int] | None) -> dict[str, Any]:
    """Steps per Routine, and the rendered Routine's length (characters, and tokens with ``count``)."""
    from routines.render import render_routine

    steps = [len(b.routine.steps) for b in built]
    texts = [render_routine(b.routine) for b in built]
    out: dict[str, Any] = {"steps_min": min(steps), "steps_median": statistics.median(steps), "steps_max": max(steps),
                           "routine_chars_median": statistics.median(len(t) for t in texts)}
    if count is not None:
        tokens = [count(t) for t in texts]
        out |= {"routine_tokens_median": statistics.median(tokens), "routine_tokens_max": max(tokens)}
    kinds: dict[str, int] = {}
    for b in built:
        for binds in b.bindings:
            for x in binds.values():
                kinds[x.kind] = kinds.get(x.kind, 0) + 1
    return out | {"argument_bindings": kinds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.cfb.stats", description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", action="store_true", help="count SmolLM2 tokens of the rendered Routines")
    parser.add_argument("--threshold", type=int, default=256, help="variable memory threshold (default 256)")
    parser.add_argument("--nested", action="store_true", help="variable memory that keeps a result's shape")
    args = parser.parse_args(argv)
    samples = load_samples()
    schemas = {t["name"]: t["inputSchema"] for t in tool_schemas(samples)}
    built = [build_sample(i, s, schemas) for i, s in enumerate(samples)]
    count = None
    if args.tokens:
        from trainer.lengths import smollm2_counter

        count = smollm2_counter()
    print(json.dumps({"memory": memory_visibility(built, args.threshold, args.nested), "routines": routine_lengths(built, count)},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
