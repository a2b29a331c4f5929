"""Prefill attention of the embedded decoder: float32 SDPA versus bfloat16 SDPA versus the blocked bfloat16
path (``Decoder._attend_blocked``), for one layer of SmolLM2-135M's shapes (9 query heads over 3 KV heads,
head size 64): ``--new`` tokens of a sample attending over a ``--context``-token prompt. Then the same
through the real model: prefilling ``--new`` tokens after a shared prefix, in float32 and bfloat16.

    .venv/bin/python benchmarks/bench_attention.py [--threads 1] [--out docs/benchmarks/attention.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from routines.backends.transformers import load_model

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "attention.json"


def timed(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1000


def layer_attention(new: int, context: int, repeat: int) -> dict[str, float]:
    lm = load_model(dtype="bfloat16")
    dec = lm.decoder
    out: dict[str, float] = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        q = torch.randn(1, 9, new, 64, dtype=dtype)
        k = torch.randn(1, 3, context, 64, dtype=dtype)
        v = torch.randn(1, 3, context, 64, dtype=dtype)
        mask = torch.arange(context)[None, :] <= (context - new + torch.arange(new))[:, None]
        out[f"sdpa_{name}_ms"] = timed(
            lambda q=q, k=k, v=v, mask=mask: torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=0.125, enable_gqa=True
            ),
            repeat,
        )
        if dtype == torch.bfloat16:
            out["blocked_bfloat16_ms"] = timed(lambda q=q, k=k, v=v: dec._attend_blocked(q, k, v), repeat)
    return out


def model_prefill(new: int, context: int) -> dict[str, float]:
    out: dict[str, float] = {}
    ids = list(range(2000, 2000 + context))
    for dtype in ("float32", "bfloat16"):
        dec = load_model(dtype=dtype).decoder
        with torch.inference_mode():
            shared = dec.new_cache(1, context - new)
            dec.prefill(ids[: context - new], shared, logits=False)
            cache = dec.new_cache(1, new)
            start = time.perf_counter()
            dec.prefill(ids[context - new :], cache.row(0), shared)
            out[f"prefill_{dtype}_s"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=int, default=200)
    parser.add_argument("--context", type=int, default=5500)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "new_tokens": args.new, "context": args.context, "threads": args.threads,
        "load_average": round(os.getloadavg()[0], 1),
        **{k: round(v, 2) for k, v in layer_attention(args.new, args.context, args.repeat).items()},
        **{k: round(v, 3) for k, v in model_prefill(args.new, args.context).items()},
        "command": "python benchmarks/bench_attention.py",
    }
    for key, value in result.items():
        print(f"{key:22} {value}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
