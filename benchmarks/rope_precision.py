"""Does exact RoPE matter? One adapter, the same per-step HR samples, RoPE's frequencies two ways.

    .venv/bin/python benchmarks/rope_precision.py [--adapter routines/adapters/hr] [--limit 300] \
        [--constrain next] [--data-dir /tmp/rt] [--out docs/benchmarks/rope_precision.json]

Our bfloat16 model (the embedded backend and the trainer both call ``.to(bfloat16)``) rounds the rotary
embedding's ``inv_freq`` buffer to bfloat16; ``from_pretrained(dtype=bfloat16)`` and vLLM keep it float32
(docs/training.md, "Serving the adapter"). The adapter was trained with the rounded frequencies, so an
adapter served by vLLM sees slightly different positions than the ones it learnt. This runs the per-step
samples (Routine w/ Branch, product protocol) once as trained and served here, then once with ``inv_freq``
restored to float32, everything else equal, and pairs the two runs sample by sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def exact_inv_freq(rope: Any) -> Any:
    """The float32 frequencies the model was built with (default RoPE only: SmolLM2's)."""
    if rope.rope_type != "default":
        raise SystemExit(f"only default RoPE is handled here, not {rope.rope_type!r}")
    inv_freq, _ = rope.compute_default_rope_parameters(rope.config)
    return inv_freq


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from evals.configs import RoutineCatalog, build_samples, resolve_configs
    from evals.decompose import DEFAULT_SHUFFLE, load_trajectories, select_queries
    from evals.runner import RunOptions, run_samples
    from routines.backends import create_backend
    from routines.scenario import Scenario
    from server.settings import Settings

    settings = Settings()
    scenario = Scenario.load("hr")
    home = Path(args.data_dir).expanduser()
    tset = await load_trajectories(scenario, "test", home, memory_threshold=settings.memory_threshold,
                                   memory_layout=scenario.memory_layout)
    chosen = select_queries(tset.trajectories, args.limit, args.seed)
    (config,) = resolve_configs("routine_branch")
    samples = build_samples(config, chosen, tset.tools, RoutineCatalog.from_scenario(scenario), seed=args.seed,
                            shuffle=DEFAULT_SHUFFLE, tools_in_prompt="routine")
    print(f"{len(chosen)} queries, {len(samples)} steps; adapter {args.adapter}, constrain {args.constrain}", flush=True)
    runs: dict[str, Any] = {}
    right: dict[str, list[bool]] = {}
    for variant in ("bfloat16", "float32"):
        backend = create_backend("local", adapter=args.adapter, dtype="bfloat16", threads=args.threads)
        rope = backend.loaded.model.model.rotary_emb  # type: ignore[union-attr]
        if variant == "float32":
            rope.inv_freq = exact_inv_freq(rope)
        started = time.perf_counter()
        results = await run_samples(samples, backend, RunOptions(constrain=args.constrain, progress=False))
        seconds = time.perf_counter() - started
        await backend.aclose()  # type: ignore[union-attr]
        right[variant] = [bool(r.verdict.overall) for r in results]
        runs[variant] = {"inv_freq_dtype": str(rope.inv_freq.dtype).removeprefix("torch."),
                         "overall": round(sum(right[variant]) / len(results), 4),
                         "right": sum(right[variant]), "seconds": round(seconds, 1)}
        print(f"inv_freq {variant}: overall {100 * runs[variant]['overall']:.1f}% "
              f"({runs[variant]['right']} of {len(results)}) in {seconds:.0f} s", flush=True)
    pairs = list(zip(right["bfloat16"], right["float32"], strict=True))
    return {
        "command": "benchmarks/rope_precision.py " + " ".join(sys.argv[1:]),
        "adapter": args.adapter, "constrain": args.constrain, "steps": len(samples),
        "subset": f"seeded subset (seed {args.seed}) of >= {args.limit} steps" if args.limit else "all",
        "runs": runs,
        "only_bfloat16_right": sum(a and not b for a, b in pairs),
        "only_float32_right": sum(b and not a for a, b in pairs),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default="routines/adapters/hr")
    parser.add_argument("--limit", type=int, default=300, help="seeded subset of whole queries (0: all)")
    parser.add_argument("--constrain", default="next")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default="~/.routine")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/rope_precision.json")
    args = parser.parse_args()
    args.limit = args.limit or None
    report = anyio.run(main, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "command"}, indent=2))
