"""``routine eval`` with a scripted backend writes the report: tables in the paper's shape, every sample's
verdict in JSON, PNG plots; runs accumulate in one report folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
from typer.testing import CliRunner

from evals.report import decoding, load_runs, render_markdown, setting
from memory.variables import calls_as_written
from server.cli import app
from tests.fixtures import eval_toy

PNG = b"\x89PNG\r\n\x1a\n"


def eval_args(tmp_path: Path, *args: str) -> list[str]:
    return [
        "eval", "--scenario", str(eval_toy.SCENARIO_DIR), "--backend", "scripted", "--data-dir", str(tmp_path / "data"),
        "--out", str(tmp_path / "report"), "--no-progress", *args,
    ]


def run_eval(tmp_path: Path, *args: str) -> str:
    """In process, with the trajectories recorded beforehand through the in-memory server (the command
    finds them in its cache and starts no server)."""
    anyio.run(eval_toy.trajectories, tmp_path / "data")
    result = CliRunner().invoke(app, eval_args(tmp_path, *args))
    assert result.exit_code == 0, result.output
    return result.output


def run_eval_process(tmp_path: Path, *args: str) -> str:
    """The real entry point in a subprocess, starting the scenario's stdio server itself."""
    done = subprocess.run(
        [sys.executable, "-c", "from server.cli import main; main()", *eval_args(tmp_path, *args)],
        capture_output=True, text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_scripted_run_writes_markdown_json_and_plots(tmp_path: Path) -> None:
    replies = tmp_path / "replies.jsonl"
    # the gold calls as a model writes them: earlier results by their memory keys
    gold = {f"{g['id']}/{k}": c for g in eval_toy.scenario().gold("test")
            for k, c in enumerate(calls_as_written(g["calls"], threshold=256))}
    rows = [{"id": sid, "output": json.dumps({"name": c["name"], "arguments": c["arguments"]})} for sid, c in gold.items()]
    rows[0]["output"] = "Let me think about it."  # q-t01/0: prose
    rows[1]["output"] = '<tool_call>{"name": "search_employee", "arguments": {"name": "Ada Lovelace"}, "x": 1}</tool_call>'
    rows[2]["output"] = '<tool_call>{"name": "get_salary", "arguments": {"employee_id": "E-002"}}</tool_call>'
    replies.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    output = run_eval(tmp_path, "--config", "main", "--replies", str(replies))
    assert "routine_branch" in output and "report.md" in output

    report = tmp_path / "report"
    md = (report / "report.md").read_text()
    assert "## Routine configurations (paper table 2)" in md
    assert "| scripted-replies | product/free |" in md  # the product's protocol (the Routine's tools), free decoding
    assert "No Routine: Structural" in md and "Routine w/o Branch: Overall" in md
    assert "paper table 3" not in md  # no component ablation ran
    # 25 samples: one prose (a tool error), one wrong value; the extra key beside the call is tolerated
    assert "| scripted-replies | product/free | 100.0 | 96.0 | 95.8 | 92.0 | 100.0 | 96.0 | 95.8 | 92.0 |" in md
    assert "tool.prose" in md and "param.value" in md
    assert "routine eval --scenario" in md and "--config routine_flat" in md
    assert "--tools-in-prompt routine --constrain none" in md  # each command reruns its protocol

    run = json.loads((report / "runs" / "scripted-replies__routine_branch__product-free.json").read_text())
    assert (run["constrained"], run["constrain"], run["tools_in_prompt"]) == ("product/free", "none", "routine")
    assert run["samples"] == len(run["results"]) == 25
    verdicts = {r["id"]: r["verdict"] for r in run["results"]}
    assert verdicts["q-t01/0"]["category"] == "tool.prose"
    assert verdicts["q-t01/2"]["category"] == "param.value" and verdicts["q-t01/2"]["call"]["name"] == "get_salary"
    assert verdicts["q-t02/0"]["overall"] is True
    summary = json.loads((report / "report.json").read_text())
    assert {r["config"] for r in summary["runs"]} == {"no_routine", "routine_branch", "routine_flat"}
    assert all("results" not in r for r in summary["runs"])
    for plot in ("accuracy.png", "errors.png"):
        assert (report / "plots" / plot).read_bytes().startswith(PNG)


def test_runs_accumulate_constrained_beside_free_and_e2e_under_both_protocols(tmp_path: Path) -> None:
    run_eval(tmp_path, "--config", "routine_branch,candidates_2")
    run_eval(tmp_path, "--config", "routine_branch", "--constrain", "next")
    run_eval(tmp_path, "--config", "routine_branch", "--constrain", "routine", "--tools-in-prompt", "all")
    output = run_eval_process(tmp_path, "--config", "e2e")
    assert "success 100.0%" in output
    runs = tmp_path / "report" / "runs"
    # a run recorded before the protocols were labelled (a boolean, every tool listed) still reads
    old = json.loads((runs / "scripted-oracle__candidates_2__product-free.json").read_text())
    (runs / "scripted-oracle__candidates_2__constrained.json").write_text(json.dumps({**old, "constrained": True}))
    md = render_markdown(load_runs(tmp_path / "report"))
    for label in ("product/free", "product/next", "paper/routine", "constrained"):
        assert f"| scripted-oracle | {label} |" in md, label
    assert "| Model | Decoding | 1 Routine (Baseline) | 2 Routines |" in md  # the columns that ran
    assert "| scripted-oracle | product/next | 100.0 | - |" in md
    assert "| scripted-oracle | constrained | - | 100.0 |" in md
    assert "## End to end (task success)" in md
    assert "| scripted-oracle | product/free | 8 | 100.0 | 100.0 | 100.0 | 100.0 |" in md
    assert "--constrain next" in md and "--tools-in-prompt all --constrain routine" in md
    names = sorted(p.name for p in runs.iterdir())
    assert names == [
        "scripted-oracle__candidates_2__constrained.json", "scripted-oracle__candidates_2__product-free.json",
        "scripted-oracle__e2e__product-free.json", "scripted-oracle__routine_branch__paper-routine.json",
        "scripted-oracle__routine_branch__product-free.json", "scripted-oracle__routine_branch__product-next.json",
    ]
    bad = CliRunner().invoke(app, eval_args(tmp_path, "--config", "routine_branch", "--constrain", "always"))
    assert bad.exit_code == 2 and "unknown constraint mode 'always'" in bad.output
    bad = CliRunner().invoke(app, eval_args(tmp_path, "--config", "routine_branch", "--tools-in-prompt", "some"))
    assert bad.exit_code == 2 and "--tools-in-prompt must be one of routine, all" in bad.output


def test_settings_label_the_protocol_and_the_constraint() -> None:
    assert [setting(c, t) for c, t in [("none", "all"), ("routine", "all"), ("none", "routine"), ("next", "routine")]] == [
        "paper/free", "paper/routine", "product/free", "product/next"]
    assert (decoding(True), decoding(False), decoding("product/next")) == ("constrained", "free", "product/next")


def test_subset_and_unknown_config_on_the_command_line(tmp_path: Path) -> None:
    output = run_eval(tmp_path, "--config", "no_routine", "--limit", "6", "--seed", "1")
    run = json.loads((tmp_path / "report" / "runs" / "scripted-oracle__no_routine__product-free.json").read_text())
    assert 6 <= run["samples"] < 25 and run["subset"].startswith("seeded subset (seed 1) of >= 6 steps")
    assert "seeded subset" in output
    bad = CliRunner().invoke(app, ["eval", "--scenario", str(eval_toy.SCENARIO_DIR), "--config", "tables",
                                   "--backend", "scripted", "--data-dir", str(tmp_path / "data")])
    assert bad.exit_code != 0 and "unknown configuration 'tables'" in str(bad.exception)
    bad = CliRunner().invoke(app, ["eval", "--scenario", str(eval_toy.SCENARIO_DIR), "--dtype", "fp8",
                                   "--backend", "local", "--data-dir", str(tmp_path / "data")])
    assert bad.exit_code == 2 and "--dtype must be float32, bfloat16 or auto" in bad.output


def test_markdown_of_no_runs() -> None:
    assert "No runs yet" in render_markdown([])
