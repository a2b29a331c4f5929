"""Evaluation reports: one JSON file per run (every sample's verdict), and over all runs in a folder a
markdown report with tables in the paper's shape (tables 2 to 5), a JSON summary and PNG plots.

A report folder accumulates runs: ``runs/<model>__<config>__<decoding>.json``, one per configuration and
decoding mode, written as each finishes. ``report.md``, ``report.json`` and ``plots/*.png`` are rebuilt
from all of them, so configurations run one after another land side by side in one report.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.checker import CATEGORIES, score
from evals.configs import CONFIGS, MAIN_CONFIGS, EvalConfig
from evals.end_to_end import TaskResult
from evals.runner import SampleResult

STEP_METRICS = ("structural", "tool", "parameters", "overall")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def setting(constrain: str, tools_in_prompt: str) -> str:
    """A run's protocol and decoding, as its tables and file names show them: ``paper/free`` (every tool
    listed, free decoding) ... ``product/next`` (the Routine's tools, next-step constrained)."""
    protocol = "paper" if tools_in_prompt == "all" else "product"
    return f"{protocol}/{'free' if constrain == 'none' else constrain}"


def decoding(constrained: bool | str) -> str:
    """A record's ``constrained`` field as a label: a :func:`setting` string, or (records written before the
    protocols were labelled: every tool listed) ``constrained`` / ``free``."""
    if isinstance(constrained, str):
        return constrained
    return "constrained" if constrained else "free"


def step_record(
    config: EvalConfig, results: Sequence[SampleResult], *, model: str, constrained: bool | str, seconds: float,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """A per-step run as stored: scores on the paper's subsets, per-Routine overall, speed, every sample."""
    scores = score(r.verdict for r in results)
    by_routine: dict[str, list[SampleResult]] = defaultdict(list)
    for r in results:
        by_routine[r.sample.routine_id].append(r)
    n = len(results)
    return {
        "kind": "steps", "config": config.name, "title": config.title, "group": config.group, "model": model,
        "constrained": constrained, **meta,
        "queries": len({r.sample.query_id for r in results}), "samples": n, "seconds": round(seconds, 2),
        "steps_per_s": round(n / seconds, 4) if seconds > 0 else None,
        "prompt_tokens_mean": round(sum(r.prompt_tokens for r in results) / n, 1) if n else None,
        "output_tokens_mean": round(sum(r.output_tokens for r in results) / n, 1) if n else None,
        "scores": scores.as_dict(),
        "by_routine": {rid: score(r.verdict for r in rs).overall for rid, rs in sorted(by_routine.items())},
        "results": [r.as_dict() for r in results],
    }


def e2e_record(
    config: EvalConfig, results: Sequence[TaskResult], *, model: str, constrained: bool | str, seconds: float,
    meta: dict[str, Any],
) -> dict[str, Any]:
    n = len(results)

    def rate(flag: str) -> float | None:
        return sum(bool(getattr(r, flag)) for r in results) / n if n else None

    return {
        "kind": "e2e", "config": config.name, "title": config.title, "group": config.group, "model": model,
        "constrained": constrained, **meta, "queries": n, "seconds": round(seconds, 2),
        "rates": {k: rate(k) for k in ("finished", "calls_ok", "answer_ok", "success")},
        "results": [r.as_dict() for r in results],
    }


def run_path(out_dir: str | Path, record: dict[str, Any]) -> Path:
    name = "__".join(_SLUG.sub("-", str(p)) for p in (record["model"], record["config"], decoding(record["constrained"])))
    return Path(out_dir) / "runs" / f"{name}.json"


def save_run(out_dir: str | Path, record: dict[str, Any]) -> Path:
    path = run_path(out_dir, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return path


def load_runs(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every run stored in ``out_dir``, in the configurations' order."""
    order = {name: i for i, name in enumerate(CONFIGS)}
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((Path(out_dir) / "runs").glob("*.json"))]
    return sorted(runs, key=lambda r: (r["model"], decoding(r["constrained"]), order.get(r["config"], 99)))


# ---- markdown -----------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _rows(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, bool], dict[str, dict[str, Any]]]:
    """(model, constrained) -> config -> per-step run."""
    out: dict[tuple[str, bool], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in runs:
        if r["kind"] == "steps":
            out[(r["model"], r["constrained"])][r["config"]] = r
    return out


def _overall_table(title: str, note: str, rows: dict, columns: Sequence[tuple[str, str]]) -> list[str]:
    present = [(n, t) for n, t in columns if any(n in cfgs for cfgs in rows.values())]
    if not any(n != "routine_branch" for n, _ in present):  # only the baseline ran: table 2 has it
        return []
    body = [
        [model, decoding(c), *(pct(cfgs[n]["scores"]["overall"]) if n in cfgs else "-" for n, _ in present)]
        for (model, c), cfgs in rows.items()
        if any(n in cfgs for n, _ in present)
    ]
    return [f"## {title}", "", note, "", *_table(["Model", "Decoding", *(t for _, t in present)], body)]


def render_markdown(runs: Sequence[dict[str, Any]]) -> str:
    """The report: the paper's tables for whichever configurations ran, then errors, speed and commands."""
    if not runs:
        return "# Evaluation report\n\nNo runs yet.\n"
    first = runs[0]
    lines = [
        f"# Evaluation report: scenario {first.get('scenario')}, split {first.get('split')}", "",
        (
            "Rates in %, on the paper's subsets: structural over all samples, tool selection over the structurally "
            "correct, parameters over those with the right tool, overall over all. Decoding is labelled "
            "protocol/constraint: paper lists every tool, product the shown Routines' tools; routine allows one "
            "call to any listed tool, next one call to a tool the Routine allows at that step (every branch's "
            "first tool at a branch point, never only the expected tool there)."
        ),
        "",
    ]
    rows = _rows(runs)
    main_present = [c for c in MAIN_CONFIGS if any(c in cfgs for cfgs in rows.values())]
    if main_present:
        header = ["Model", "Decoding"]
        for name in main_present:
            header += [f"{CONFIGS[name].title}: {m.capitalize()}" for m in ("structural", "tool", "parameter", "overall")]
        body = []
        for (model, c), cfgs in rows.items():
            row = [model, decoding(c)]
            for name in main_present:
                s = cfgs.get(name, {}).get("scores", {})
                row += [pct(s.get(m)) for m in STEP_METRICS]
            body.append(row)
        lines += ["## Routine configurations (paper table 2)", "", *_table(header, body)]
    lines += _overall_table("Routine components (paper table 3)", "Under the branching Routine.", rows,
                            [("routine_branch", "Baseline Routine"), ("io", "Routine w/ I/O Params"),
                             ("no_tool_names", "Routine w/o Tools")])
    lines += _overall_table("Routine generation (paper table 4)", "The user's draft in place of the expert Routine.",
                            rows, [("draft", "User Draft"), ("routine_branch", "Human Annotation")])
    lines += _overall_table("Number of candidate Routines (paper table 5)", "The right Routine among k, shuffled.",
                            rows, [("routine_branch", "1 Routine (Baseline)"), ("candidates_2", "2 Routines"),
                                   ("candidates_3", "3 Routines"), ("candidates_5", "5 Routines")])
    e2e = [r for r in runs if r["kind"] == "e2e"]
    if e2e:
        body = [[r["model"], decoding(r["constrained"]), str(r["queries"]),
                 *(pct(r["rates"][k]) for k in ("finished", "calls_ok", "answer_ok", "success"))] for r in e2e]
        lines += ["## End to end (task success)", "",
                  ("Whole queries through the executor against the live servers; success = reached the finish "
                   "step, made the gold calls and gave the gold answer."), "",
                  *_table(["Model", "Decoding", "Queries", "Finished", "Right calls", "Right answer", "Success"], body)]
    steps = [r for r in runs if r["kind"] == "steps"]
    if steps:
        cats = [c for c in CATEGORIES if any(r["scores"]["categories"].get(c) for r in steps)]
        body = [[r["model"], r["config"], decoding(r["constrained"]), str(r["samples"]),
                 *(str(r["scores"]["categories"].get(c, 0)) for c in cats)] for r in steps]
        lines += ["## Errors by category (counts)", "", *_table(["Model", "Config", "Decoding", "Samples", *cats], body)]
        routines = sorted({rid for r in steps for rid in r["by_routine"]})
        body = [[r["model"], r["config"], decoding(r["constrained"]), *(pct(r["by_routine"].get(rid)) for rid in routines)]
                for r in steps]
        lines += ["## Overall accuracy by Routine", "", *_table(["Model", "Config", "Decoding", *routines], body)]
        body = [[r["model"], r["config"], decoding(r["constrained"]), str(r["queries"]), str(r["samples"]),
                 f"{r['seconds']:.0f}", f"{r['steps_per_s']:.3f}" if r.get("steps_per_s") else "-",
                 str(r.get("prompt_tokens_mean")), str(r.get("output_tokens_mean"))] for r in steps]
        lines += ["## Runs", "", *_table(["Model", "Config", "Decoding", "Queries", "Samples", "Seconds", "Steps/s",
                                           "Prompt tokens (mean)", "Output tokens (mean)"], body)]
    lines += ["## Commands", ""]
    lines += [f"- {r['model']} / {r['config']} / {decoding(r['constrained'])}: `{r.get('command', '')}`" for r in runs]
    return "\n".join(lines) + "\n"


# ---- plots --------------------------------------------------------------------------------------------


def write_plots(runs: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """``accuracy.png`` (the four rates per configuration, one panel per model and decoding) and
    ``errors.png`` (error categories as a share of samples, per run)."""
    steps = [r for r in runs if r["kind"] == "steps"]
    if not steps:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = _rows(steps)
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(6, 1.6 * max(len(c) for c in rows.values())), 3.2 * len(rows)),
                             squeeze=False)
    for ax, ((model, c), cfgs) in zip(axes[:, 0], rows.items(), strict=True):
        names = list(cfgs)
        width = 0.2
        for j, metric in enumerate(STEP_METRICS):
            values = [100 * (cfgs[n]["scores"][metric] or 0) for n in names]
            ax.bar([i + (j - 1.5) * width for i in range(len(names))], values, width, label=metric)
        ax.set_xticks(range(len(names)), [CONFIGS[n].title if n in CONFIGS else n for n in names], fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"{model} ({decoding(c)})", fontsize=10)
        ax.legend(fontsize=7, ncol=4, loc="upper left")
    fig.tight_layout()
    written.append(folder / "accuracy.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(steps) + 2), 4))
    labels = [f"{r['config']}\n{decoding(r['constrained'])}" for r in steps]
    bottom = [0.0] * len(steps)
    for cat in CATEGORIES:
        values = [100 * r["scores"]["categories"].get(cat, 0) / max(1, r["samples"]) for r in steps]
        if any(values):
            ax.bar(labels, values, bottom=bottom, label=cat)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("% of samples")
    ax.set_title("Errors by category")
    ax.tick_params(axis="x", labelsize=7)
    if any(bottom):
        ax.legend(fontsize=7)
    else:
        ax.bar(labels, bottom)
        ax.text(0.5, 0.5, "no errors", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    written.append(folder / "errors.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The runs without their per-sample results (those stay in ``runs/*.json``)."""
    return {"runs": [{k: v for k, v in r.items() if k != "results"} for r in runs]}


def write_report(out_dir: str | Path) -> dict[str, Path]:
    """Rebuild ``report.md``, ``report.json`` and ``plots/`` from every run in ``out_dir``."""
    out = Path(out_dir)
    runs = load_runs(out)
    paths = {"markdown": out / "report.md", "json": out / "report.json"}
    out.mkdir(parents=True, exist_ok=True)
    paths["markdown"].write_text(render_markdown(runs), encoding="utf-8")
    paths["json"].write_text(json.dumps(summary(runs), ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    for plot in write_plots(runs, out / "plots"):
        paths[plot.stem] = plot
    return paths
