"""``routine eval --workers N``: the local backend in N worker processes, started before timing, closed after,
recorded in the report's command; other backends refuse the option."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from evals.configs import CONFIGS, build_samples
from evals.decompose import DEFAULT_SHUFFLE
from evals.runner import conversation_key
from routines.backends.process import ProcessBackend
from server.cli import app, eval_cmds
from tests.fixtures import eval_toy
from tests.fixtures.worker_backends import echo_backend


def eval_args(tmp_path: Path, *args: str) -> list[str]:
    return ["eval", "--scenario", str(eval_toy.SCENARIO_DIR), "--data-dir", str(tmp_path / "data"),
            "--out", str(tmp_path / "report"), "--no-progress", *args]


@pytest.mark.timeout(60)
def test_workers_run_the_samples_in_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded model is swapped for an oracle at the model boundary (the factory the workers get);
    the rest is the real command, spawning real processes."""
    tset = anyio.run(eval_toy.trajectories, tmp_path / "data")
    samples = build_samples(CONFIGS["routine_branch"], tset.trajectories, tset.tools, eval_toy.catalog(), seed=0,
                            shuffle=DEFAULT_SHUFFLE)
    answers = {conversation_key(s.messages()): s.expected.text() for s in samples}
    made: list[tuple[dict[str, Any], ProcessBackend]] = []

    def oracle_worker(factory: Any, **kwargs: Any) -> ProcessBackend:
        worker = ProcessBackend(echo_backend, answers=answers)
        made.append((kwargs, worker))
        return worker

    monkeypatch.setattr(eval_cmds, "ProcessBackend", oracle_worker)
    result = CliRunner().invoke(app, eval_args(tmp_path, "--backend", "local", "--workers", "2", "--config",
                                               "routine_branch", "--dtype", "bfloat16", "--adapter", "none"))
    assert result.exit_code == 0, result.output
    assert "starting 2 worker processes" in result.output and "2 workers ready" in result.output
    assert [kwargs["kind"] for kwargs, _ in made] == ["local", "local"]
    assert {(kwargs["threads"], kwargs["dtype"]) for kwargs, _ in made} == {(1, "bfloat16")}
    for _, worker in made:  # closed, after they exited when asked
        assert worker.process is not None and worker.process.exitcode == 0
    run = json.loads((tmp_path / "report" / "runs" / "SmolLM2-135M__routine_branch__product-free.json").read_text())
    assert run["scores"]["overall"] == 1.0 and run["samples"] == len(samples) and run["workers"] == 2
    assert "--workers 2" in run["command"] and "--threads" not in run["command"]


def test_workers_are_for_the_local_backend_only(tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, eval_args(tmp_path, "--backend", "scripted", "--workers", "2"))
    assert bad.exit_code == 2 and "--workers is for the local backend" in bad.output
    bad = CliRunner().invoke(app, eval_args(tmp_path, "--backend", "local", "--workers", "0"))
    assert bad.exit_code == 2 and "--workers must be at least 1" in bad.output
