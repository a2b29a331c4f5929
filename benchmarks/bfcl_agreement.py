"""Agreement of our per-step checker with BFCL's ``ast_checker`` on BFCL's simple, multiple and parallel data.

    python benchmarks/bfcl_agreement.py [--limit N] [--seed 0] [--out docs/bfcl-agreement.json]

Prints markdown tables (per BFCL category, per perturbation, disagreements by kind) and writes the same
numbers, with up to three examples of every kind of disagreement, as JSON. What the numbers mean is in
``docs/bfcl-agreement.md``; how the outputs are made is in :mod:`evals.bfcl_agreement`.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from evals import bfcl_data
from evals.bfcl_agreement import PROBES, Outcome, evaluate

log = logging.getLogger("benchmarks.bfcl_agreement")
ROOT = Path(__file__).resolve().parent.parent


def _tally(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    agree = sum(o.agree for o in outcomes)
    return {
        "n": n,
        "agree": agree,
        "agreement": agree / n if n else None,
        "both_valid": sum(o.bfcl_valid and o.ours_valid for o in outcomes),
        "both_invalid": sum(not o.bfcl_valid and not o.ours_valid for o in outcomes),
        "only_bfcl_valid": sum(o.bfcl_valid and not o.ours_valid for o in outcomes),
        "only_ours_valid": sum(o.ours_valid and not o.bfcl_valid for o in outcomes),
    }


def summarize(outcomes: Sequence[Outcome], examples: int = 3) -> dict[str, Any]:
    by_category: dict[str, list[Outcome]] = defaultdict(list)
    by_perturbation: dict[str, list[Outcome]] = defaultdict(list)
    kinds: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_category[o.category].append(o)
        by_perturbation[o.perturbation].append(o)
        if not o.agree:
            kinds[o.kind].append(o)
    return {
        "comparable": _tally([o for o in outcomes if not o.probe]),
        "probes": _tally([o for o in outcomes if o.probe]),
        "per_category": {
            c: {
                "comparable": _tally([o for o in os if not o.probe]),
                "probes": _tally([o for o in os if o.probe]),
            }
            for c, os in by_category.items()
        },
        "per_perturbation": {p: {"probe": p in PROBES, **_tally(os)} for p, os in by_perturbation.items()},
        "disagreements": {
            kind: {"count": len(os), "probe": os[0].probe, "examples": [_example(o) for o in os[:examples]]}
            for kind, os in sorted(kinds.items(), key=lambda item: -len(item[1]))
        },
    }


def _example(o: Outcome) -> dict[str, Any]:
    data = asdict(o)
    data["calls"] = [{"name": n, "arguments": a} for n, a in o.calls]
    return data


def _table(title: str, rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"### {title}",
        "",
        "| | cases | agree | agreement | both valid | both invalid | only BFCL valid | only ours valid |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in rows.items():
        rate = f"{100 * t['agreement']:.2f}%" if t["agreement"] is not None else "-"
        lines.append(
            f"| {name} | {t['n']} | {t['agree']} | {rate} | {t['both_valid']} | {t['both_invalid']} "
            f"| {t['only_bfcl_valid']} | {t['only_ours_valid']} |"
        )
    return "\n".join(lines)


def render(summary: dict[str, Any]) -> str:
    rows = {f"{c}, comparable": v["comparable"] for c, v in summary["per_category"].items()}
    rows |= {"**all comparable**": summary["comparable"]}
    rows |= {f"{c}, probes": v["probes"] for c, v in summary["per_category"].items()}
    rows |= {"all probes": summary["probes"]}
    perturbations = {(f"{p} (probe)" if t["probe"] else p): t for p, t in summary["per_perturbation"].items()}
    parts = [_table("Per BFCL category", rows), "", _table("Per perturbation", perturbations), ""]
    parts += ["### Disagreements by kind", ""]
    parts += [
        f"- {k}: {v['count']}" + (" (probe)" if v["probe"] else "")
        for k, v in summary["disagreements"].items()
    ]
    return "\n".join(parts)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--categories", nargs="+", default=list(bfcl_data.CATEGORIES), choices=bfcl_data.CATEGORIES
    )
    parser.add_argument("--limit", type=int, default=None, help="entries per category (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bfcl-agreement.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        bfcl_data.load_ast_checker()
    except bfcl_data.BfclUnavailable as exc:
        log.error("%s", exc)
        return 2
    started = time.perf_counter()
    entries = [e for c in args.categories for e in bfcl_data.load_entries(c, args.limit)]
    outcomes = evaluate(entries, seed=args.seed)
    seconds = time.perf_counter() - started
    summary = {
        "command": " ".join(
            ["python benchmarks/bfcl_agreement.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "bfcl_eval_version": _version("bfcl-eval"),
        "python": platform.python_version(),
        "categories": args.categories,
        "entries": len(entries),
        "cases": len(outcomes),
        "seconds": round(seconds, 2),
        "seed": args.seed,
        **summarize(outcomes),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    sys.stdout.write(
        f"{render(summary)}\n\n{len(outcomes)} cases from {len(entries)} entries in {seconds:.1f} s; wrote {args.out}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
