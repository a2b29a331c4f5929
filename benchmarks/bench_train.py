"""Training throughput of ``routine train`` against what this CPU can do at all.

    .venv/bin/python benchmarks/bench_train.py [--lengths 1024,2048,3072] [--out docs/benchmarks/train.json]

1. The bound: bf16 matrix multiplication (the CPU multiplies bf16 natively), GFLOP/s at the shapes of
   SmolLM2-135M's layers for a sequence of the given length.
2. One LoRA training step (forward, backward of the call tokens' loss, as ``trainer.loss.call_loss`` does)
   of the embedded model at each length: tokens/s, and the GFLOP/s that implies. The work per token of a
   LoRA step with frozen base weights is about 4 x (non-embedding parameters) for the matrix products
   (forward 2, input gradients 2; no weight gradients) plus attention (4 x layers x length x hidden per
   token, doubled for backward).

Prints a table and writes the numbers as JSON. Run it on an idle machine: numbers from a busy one say less.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 2.0) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * m * k * n * done / (time.perf_counter() - start) / 1e9


def step_flops(model: torch.nn.Module, length: int) -> float:
    config = model.config
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lora_" not in n)
    attention = 4 * config.num_hidden_layers * length * config.hidden_size
    return length * (4 * body + 2 * attention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,2048,3072")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/train.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from trainer.loss import call_loss
    from trainer.sequences import IGNORE, TrainSequence
    from trainer.train import TrainConfig, load_base, with_lora

    lengths = [int(x) for x in args.lengths.split(",")]
    bound = {dtype: max(matmul_gflops(length, 576, 1536, getattr(torch, dtype)) for length in lengths[:1])
             for dtype in ("bfloat16", "float32")}
    config = TrainConfig.from_preset("cpu")
    model, tokenizer = load_base(config)
    model = with_lora(model, tokenizer, config)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    rows = []
    for length in lengths:
        ids = torch.randint(0, 40000, (1, length))
        labels = [IGNORE] * (length - 200) + ids[0, -200:].tolist()  # ~200 call tokens, as in HR records
        seq = TrainSequence("bench", ids[0].tolist(), labels)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            call_loss(model, ids, seq).backward()
            times.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        best = min(times)
        gflops = step_flops(model, length) / best / 1e9
        rows.append({"length": length, "seconds": round(best, 2), "tokens_per_s": round(length / best, 1),
                     "gflops": round(gflops, 1), "fraction_of_bf16_matmul": round(gflops / bound["bfloat16"], 3)})
        print(f"{length:6d} tokens  {best:6.2f} s  {length / best:7.1f} tok/s  {gflops:6.1f} GFLOP/s  "
              f"{100 * gflops / bound['bfloat16']:.0f}% of the bf16 matmul bound")
    result = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "matmul_gflops": {k: round(v, 1) for k, v in bound.items()}, "steps": rows,
              "command": "benchmarks/bench_train.py --lengths " + args.lengths}
    print(json.dumps(result["matmul_gflops"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
