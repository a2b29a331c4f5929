"""Two per-step runs of the same samples, paired: which steps each gets right, where they differ.

A run is a ``runs/*.json`` file of a report folder (or the folder, when it holds one run). Samples are paired
by id (``query/index``), so only runs over the same trajectories compare. The table counts, for each
Routine step, the samples right in each run; then the wrong samples by expected tool and error category,
the first steps of branches (the branch chosen), and how many samples only one of the runs gets right::

    python -m evals.compare docs/results/product-trained-s11 docs/results/product-nameweight5-s12 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.report import load_runs
from routines.errors import CallerError
from routines.model import Label


def load_run(path: str | Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """A run's label and its results by sample id. ``path`` is a run file or a report folder with one run."""
    path = Path(path)
    try:
        runs = load_runs(path) if path.is_dir() else [json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, json.JSONDecodeError) as exc:
        raise CallerError(f"cannot read the run {path}: {exc}") from None
    if len(runs) != 1:
        raise CallerError(f"{path} must hold exactly one run in runs/*.json (found {len(runs)}); pass the run file")
    (data,) = runs
    if data.get("kind") != "steps" or not isinstance(data.get("results"), list):
        raise CallerError(f"{path} is not a per-step run (kind 'steps' with results); end-to-end runs do not pair")
    return str(path), {r["id"]: r for r in data["results"]}


def _right(result: dict[str, Any]) -> bool:
    return bool(result["verdict"]["overall"])


def _branch_start(result: dict[str, Any]) -> bool:
    label = Label.parse(result["step"])
    return label.is_branch and label.index == 1


@dataclass
class Comparison:
    labels: tuple[str, str]
    samples: int
    right: tuple[int, int]
    only: tuple[int, int]
    """Samples only the first, only the second run gets right."""
    branch_starts: int
    branch_tool_right: tuple[int, int]
    steps: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    """(routine, step, samples, right in the first, right in the second), every step."""
    errors: tuple[Counter[str], Counter[str]] = field(default_factory=lambda: (Counter(), Counter()))
    """Wrong samples by ``expected tool: category``."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": list(self.labels), "samples": self.samples, "right": list(self.right),
            "only_right": list(self.only), "branch_starts": self.branch_starts,
            "branch_tool_right": list(self.branch_tool_right),
            "steps": [dict(zip(("routine", "step", "samples", "first", "second"), row, strict=True))
                      for row in self.steps],
            "errors": [dict(c.most_common()) for c in self.errors],
        }

    def render(self, *, all_steps: bool = False) -> str:
        a, b = self.labels
        (ra, rb), n = self.right, self.samples
        summary = (f"{n} samples paired; right {ra} / {rb} ({100 * ra / n:.1f}% / {100 * rb / n:.1f}%); "
                   f"only the first right {self.only[0]}, only the second {self.only[1]}")
        branches = (f"first step of a branch, right tool: {self.branch_tool_right[0]} / "
                    f"{self.branch_tool_right[1]} of {self.branch_starts}")
        lines = [f"first:  {a}", f"second: {b}", summary, branches, "",
                 f"{'routine':28} {'step':7} {'first':>8} {'second':>8}"]
        for routine, step, count, x, y in self.steps:
            if all_steps or x != y:
                lines.append(f"{routine:28} {step:7} {f'{x}/{count}':>8} {f'{y}/{count}':>8}")
        for label, errors in zip(("first", "second"), self.errors, strict=True):
            lines.append(f"\nwrong in the {label}: " + ", ".join(f"{k} {v}" for k, v in errors.most_common(12)))
        return "\n".join(lines)


def compare(first: str | Path, second: str | Path) -> Comparison:
    (la, a), (lb, b) = load_run(first), load_run(second)
    ids = sorted(a.keys() & b.keys())
    if not ids or len(ids) != len(a) or len(ids) != len(b):
        raise CallerError(f"the runs do not cover the same samples ({len(a)} and {len(b)}, {len(ids)} shared); "
                          "compare runs of one scenario, split, configuration and subset")
    per_step: dict[tuple[str, str], list[int]] = {}
    for i in ids:
        row = per_step.setdefault((a[i]["routine_id"], a[i]["step"]), [0, 0, 0])
        row[0] += 1
        row[1] += _right(a[i])
        row[2] += _right(b[i])
    starts = [i for i in ids if _branch_start(a[i])]

    def errors(run: dict[str, dict[str, Any]]) -> Counter[str]:
        return Counter(f"{r['expected']['name']}: {r['verdict']['category']}" for r in run.values() if not _right(r))

    return Comparison(
        labels=(la, lb), samples=len(ids),
        right=(sum(_right(a[i]) for i in ids), sum(_right(b[i]) for i in ids)),
        only=(sum(_right(a[i]) and not _right(b[i]) for i in ids), sum(_right(b[i]) and not _right(a[i]) for i in ids)),
        branch_starts=len(starts),
        branch_tool_right=(sum(bool(a[i]["verdict"]["tool"]) for i in starts),
                           sum(bool(b[i]["verdict"]["tool"]) for i in starts)),
        steps=[(r, s, *row) for (r, s), row in sorted(per_step.items())],
        errors=(errors(a), errors(b)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.compare", description=__doc__.split("\n")[0])
    parser.add_argument("first", help="a run file (runs/*.json) or a report folder holding one run")
    parser.add_argument("second")
    parser.add_argument("--all-steps", action="store_true", help="list every step, not only those that differ")
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    args = parser.parse_args(argv)
    try:
        result = compare(args.first, args.second)
    except CallerError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(result.render(all_steps=args.all_steps))
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
