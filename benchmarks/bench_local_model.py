"""How fast the embedded executor (SmolLM2-135M on CPU) turns evaluation samples into tool calls.

Builds realistic per-step samples with the executor's own prompt builder: a synthetic HR Routine and 25
synthetic tool schemas (a 2.4k-token system prompt: tool schemas are token-heavy), several queries, and for
each query one sample per step with the earlier calls and observations as history (a variable appears once
a step stored a long value). Then it measures, with constrained decoding as the evaluation uses it:

- ``naive``: one sample at a time, no KV reuse at all (a few samples; it is slow);
- ``prefix_reuse``: one sample at a time in trajectory order, reusing the previous prompt's KV cache;
- ``batched``: all samples in one ``complete_batch`` (shared-prefix groups, rows decoded together);
- decode steps for 1/8/16 rows over the system prompt, with our decoder and with Hugging Face's forward
  and ``DynamicCache`` (the prompt's KV repeated per row, as left-padded ``generate`` holds it).

The system prompt is computed once before timing ``prefix_reuse`` and ``batched`` (an evaluation computes
it once, not per sample) and its cost is reported apart. Prints the numbers and writes
``docs/benchmarks/local_model.json``. About 4 minutes on this (busy) 2-core machine::

    .venv/bin/python benchmarks/bench_local_model.py
    .venv/bin/python benchmarks/bench_local_model.py --threads 2   # when the machine is otherwise idle
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Self

import torch

from routines.backends.base import Completion, Constraint, Message, ToolSpec
from routines.backends.transformers import TransformersBackend
from routines.calls import CallParseError, ToolCall, parse_tool_call
from routines.prompt import build_messages, build_system_prompt
from routines.trajectory import Call

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "local_model.json"

_NOUN_WORDS = (
    "employee department salary leave payslip contract review team policy holiday expense badge training asset "
    "ticket manager role budget timesheet benefit pension overtime candidate office report"
)
_NOUNS = _NOUN_WORDS.split()
_VERBS = ["get", "search", "list", "check", "create"]

ROUTINE = """Step 1. Get requester: look up the current user's profile and role, use the get_user_profile tool;
Step 2. Find employee: search the employee named in the question and take the employee id of the best match, use the search_employee tool;
Step 3. Check permission: verify that the requester may read the employee's pay data, use the check_salary_permission tool;
Step 4. Branch on the permission result.
Branch 4-1 Step 1. Full salary: if the permission is granted, get the employee's current salary with its components, use the get_salary tool;
Branch 4-2 Step 1. Salary band: otherwise get only the salary band of the employee's grade, use the get_salary_band tool;
Step 5. Department context: get the department's headcount and average band for comparison, use the get_department_stats tool;
Step 6. Answer: summarise the findings for the user in two sentences, use the summarize tool, and end the workflow;"""


def synthetic_tools() -> list[ToolSpec]:
    """25 tools of distinct function, 1 to 3 parameters each, with HR-sounding descriptions."""
    named = [
        "get_user_profile",
        "search_employee",
        "check_salary_permission",
        "get_salary",
        "get_salary_band",
        "get_department_stats",
        "summarize",
    ]
    names = named + [f"{_VERBS[i % 5]}_{_NOUNS[i]}_records" for i in range(25 - len(named))]
    tools = []
    for i, name in enumerate(names):
        props: dict[str, Any] = {
            "employee_id": {"type": "string"},
            "department": {"type": "string"},
            "year": {"type": "integer"},
        }
        keep = list(props)[: 1 + i % 3]
        if name == "summarize":
            props, keep = {"text": {"type": "string"}}, ["text"]
        desc = f"{name.replace('_', ' ').capitalize()}; returns the {_NOUNS[i]} data as JSON."
        tools.append(
            ToolSpec(
                name,
                desc,
                {"type": "object", "properties": {k: props[k] for k in keep}, "required": keep[:1]},
            )
        )
    return tools


def trajectory(q: int) -> list[tuple[ToolCall, str]]:
    """The calls and observations of one run of the Routine for query ``q``."""
    emp, dept = f"E{1000 + 37 * q:05d}", ["Finance", "Sales", "Research", "Legal"][q % 4]
    members = ", ".join(f"E{2000 + q * 11 + i:05d}" for i in range(30))
    return [
        (
            ToolCall("get_user_profile", {"employee_id": "E00007"}),
            json.dumps({"employee_id": "E00007", "name": "Rita Moreno", "role": "hr", "department": "HR"}),
        ),
        (
            ToolCall("search_employee", {"employee_id": f"name:{q}"}),
            json.dumps({"matches": [{"employee_id": emp, "name": f"Person {q}", "department": dept}]}),
        ),
        (
            ToolCall("check_salary_permission", {"employee_id": emp}),
            json.dumps({"allowed": True, "reason": "requester is in HR"}),
        ),
        (
            ToolCall("get_salary", {"employee_id": emp}),
            json.dumps({"employee_id": emp, "base": 61000 + q * 1000, "bonus": 4000, "currency": "EUR"}),
        ),
        (
            ToolCall("get_department_stats", {"department": dept}),
            json.dumps(
                {"department": dept, "headcount": 30, "members": "memory_members", "average_band": "B3"}
            ),
        ),
        (ToolCall("summarize", {"text": f"Person {q} earns {61000 + q * 1000} EUR"}), members),
    ]


def samples(n_queries: int, n_steps: int) -> list[list[Message]]:
    """One conversation per (query, step): what the executor sees before making that step's call."""
    tools = synthetic_tools()
    out = []
    for q in range(n_queries):
        steps = trajectory(q)
        for k in range(min(n_steps, len(steps))):
            system = build_system_prompt(routines=[ROUTINE], tools=tools, system={"user_id": "E00007"})
            history = [Call(str(i + 1), call.name, call.arguments, obs) for i, (call, obs) in enumerate(steps[:k])]
            out.append(
                build_messages(
                    system, f"What is the salary of Person {q} in {['Finance', 'Sales'][q % 2]}?", history
                )
            )
    return out


class Timer:
    """Wall and CPU seconds of a block (CPU time shows how much of the wall time was waiting for a busy CPU)."""

    def __enter__(self) -> Self:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def parses(text: str) -> bool:
    try:
        parse_tool_call(text)
    except CallParseError:
        return False
    return True


def summarise(name: str, results: list[Completion], timer: Timer) -> dict[str, Any]:
    seconds = timer.wall
    prompt = sum(c.prompt_tokens for c in results)
    computed = sum(c.prompt_tokens - c.meta["reused_prompt_tokens"] for c in results)
    gen = sum(c.output_tokens for c in results)
    row = {
        "mode": name,
        "samples": len(results),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(timer.cpu, 2),
        "samples_per_s": round(len(results) / seconds, 3),
        "samples_per_cpu_s": round(len(results) / timer.cpu, 3),
        "prompt_tokens": prompt,
        "prefilled_tokens": computed,
        "output_tokens": gen,
        "output_tokens_per_s": round(gen / seconds, 1),
        "parsed_calls": sum(parses(c.text) for c in results),
    }
    print(
        f"{name:>13}: {row['samples']:3d} samples in {seconds:6.1f} s ({timer.cpu:.1f} CPU s) = "
        f"{row['samples_per_s']:.2f} samples/s "
        f"(prefilled {computed}/{prompt} prompt tokens, {gen} output tokens)",
        flush=True,
    )
    return row


def decode_steps(
    backend: TransformersBackend, prompt: list[int], batches: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Milliseconds per decode step over a shared ``prompt``: our decoder vs HF forward + DynamicCache."""
    from transformers import DynamicCache

    lm, dec, rows = backend.loaded.model, backend.loaded.decoder, []
    with torch.inference_mode():
        shared = dec.new_cache(1, len(prompt))
        dec.prefill(prompt, shared, logits=False)
        hf = DynamicCache(config=lm.config)
        lm(torch.tensor([prompt]), past_key_values=hf, use_cache=True, logits_to_keep=1)
        for b in batches:
            cache = dec.new_cache(b, 64)
            start = time.perf_counter()
            for _ in range(8):
                dec.step([42] * b, cache, shared)
            ours = (time.perf_counter() - start) / 8
            repeated = DynamicCache(config=lm.config)
            for layer, src in zip(repeated.layers, hf.layers, strict=True):
                layer.update(src.keys.repeat(b, 1, 1, 1), src.values.repeat(b, 1, 1, 1))
            start = time.perf_counter()
            for _ in range(8):
                lm(torch.full((b, 1), 42), past_key_values=repeated, use_cache=True)
            theirs = (time.perf_counter() - start) / 8
            rows.append(
                {
                    "batch": b,
                    "context": len(prompt),
                    "ours_ms": round(ours * 1000, 1),
                    "hf_dynamic_cache_ms": round(theirs * 1000, 1),
                    "ours_tokens_per_s": round(b / ours, 1),
                    "hf_tokens_per_s": round(b / theirs, 1),
                }
            )
            print(
                f"  decode step, {b:2d} rows over {len(prompt)} tokens: ours {ours * 1000:6.1f} ms, "
                f"HF DynamicCache {theirs * 1000:6.1f} ms",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=4, help="queries (trajectories) to sample")
    parser.add_argument("--steps", type=int, default=6, help="steps per trajectory (at most 6)")
    parser.add_argument("--naive", type=int, default=3, help="samples for the slow no-reuse baseline")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    convs = samples(args.queries, args.steps)
    constraint = Constraint(tools=tuple(synthetic_tools()), max_string_length=64)
    load_before = os.getloadavg()[0]
    reuse = TransformersBackend(threads=args.threads, max_batch=args.max_batch)
    with Timer() as load:
        lm = reuse.loaded
    naive = TransformersBackend(threads=args.threads, prefix_reuse=False)
    lengths = [len(lm.encode(c)) for c in convs]
    system_tokens = len(lm.encode(convs[0][:1]))
    print(
        f"model loaded in {load.wall:.1f} s on {torch.get_num_threads()} threads (load average "
        f"{load_before:.1f}); {len(convs)} samples, system prompt {system_tokens} tokens, prompts "
        f"{min(lengths)}-{max(lengths)} tokens",
        flush=True,
    )

    naive.generate([convs[0]], constraint, 4)  # warm-up: one-off allocations and kernel choices
    # The system prompt (role, rules, tools, Routine) is computed once per evaluation, not once per sample:
    # compute it before timing the modes that keep it, and report its cost apart.
    hello = [convs[0][0], Message("user", "hello")]
    batcher = TransformersBackend(threads=args.threads, max_batch=args.max_batch)
    with Timer() as system_prefill:
        batcher.generate([hello], constraint, 1)
    reuse.generate([hello], constraint, 1)
    rows = []
    picks = convs[:: max(1, len(convs) // args.naive)][: args.naive]
    with Timer() as timer:
        alone = [naive.generate([c], constraint, args.max_tokens)[0] for c in picks]
    rows.append(summarise("naive", alone, timer))
    with Timer() as timer:
        one_by_one = [reuse.generate([c], constraint, args.max_tokens)[0] for c in convs]
    rows.append(summarise("prefix_reuse", one_by_one, timer))
    with Timer() as timer:
        batched = batcher.generate(convs, constraint, args.max_tokens)
    rows.append(summarise("batched", batched, timer))
    differ = [
        {"sample": i, "one_by_one": a.text, "batched": b.text}
        for i, (a, b) in enumerate(zip(one_by_one, batched, strict=True))
        if a.text != b.text
    ]
    same = len(convs) - len(differ)
    print(f"batched text equals one-by-one text for {same}/{len(convs)} samples {differ}", flush=True)

    prompt = lm.encode(convs[-1])
    with Timer() as timer, torch.inference_mode():
        lm.decoder.prefill(prompt, lm.decoder.new_cache(1, len(prompt)))
    prefill_tps = len(prompt) / timer.wall
    print(f"prefill: {len(prompt)} tokens at {prefill_tps:.0f} tokens/s", flush=True)
    steps = decode_steps(reuse, lm.encode(convs[0][:1]), (1, 8, 16))

    result = {
        "command": "python benchmarks/bench_local_model.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        },
        "model": Path(lm.key[0]).name,
        "load_s": round(load.wall, 1),
        "system_prompt_tokens": system_tokens,
        "system_prompt_prefill_s": round(system_prefill.wall, 1),
        "constrained": True,
        "max_tokens": args.max_tokens,
        "modes": rows,
        "batched_equals_one_by_one": f"{same}/{len(convs)}",
        "batched_differs": differ,
        "prefill_tokens_per_s": round(prefill_tps, 1),
        "decode_steps": steps,
        "projected_minutes_for_1150_samples": {  # plus the system prompt once
            r["mode"]: round(1150 / r["samples_per_s"] / 60, 1) for r in rows
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"projected minutes for 1,150 samples: {result['projected_minutes_for_1150_samples']}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
