"""The run log: every run and step in SQLite, committed as it happens, read back by id or prefix."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memory.runlog import RunLog, StepRecord


def _step(step: str, tool: str, **kw: object) -> StepRecord:
    return StepRecord(step=step, source="model", tool=tool, arguments={"name": "memory_members"},
                      resolved_arguments={"name": ["a", "b"]}, **kw)  # type: ignore[arg-type]


def test_a_run_and_its_steps_read_back_with_every_field(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "runs.sqlite")
    run_id = log.start_run(query="salary of Ada", mode="hybrid", routine_id="hr.salary", routine_version=3,
                           backend="scripted", user_id="u-1", inputs={"employee_name": "Ada"})
    log.log_step(run_id, StepRecord(step=None, source="model", raw_output="hello", error="no tool call found",
                                    error_kind="model", prompt_tokens=120, output_tokens=3, model_latency_s=0.5))
    log.log_step(run_id, _step("1", "search_employee", attempt=1, result={"employee_id": "E-1"}, prompt_tokens=130,
                               output_tokens=20, prompt_chars=520, model_latency_s=0.25, tool_latency_s=0.01))
    log.finish_run(run_id, status="finished", answer="Ada earns 98,000")

    run = RunLog(tmp_path / "runs.sqlite").get_run(run_id)
    assert (run["routine_id"], run["routine_version"], run["query"], run["mode"], run["backend"]) == (
        "hr.salary", 3, "salary of Ada", "hybrid", "scripted")
    assert (run["status"], run["answer"], run["user_id"], run["inputs"]) == (
        "finished", "Ada earns 98,000", "u-1", {"employee_name": "Ada"})
    assert run["finished_at"] >= run["started_at"]
    first, second = run["steps"]
    assert (first["seq"], first["raw_output"], first["error_kind"], first["tool"]) == (1, "hello", "model", None)
    assert second["arguments"] == {"name": "memory_members"}
    assert second["resolved_arguments"] == {"name": ["a", "b"]}
    assert second["result"] == {"employee_id": "E-1"}
    assert (second["attempt"], second["prompt_tokens"], second["output_tokens"], second["prompt_chars"]) == (1, 130, 20, 520)
    assert (second["model_latency_s"], second["tool_latency_s"]) == (0.25, 0.01)


def test_steps_are_committed_as_they_happen(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    log = RunLog(path)
    run_id = log.start_run(query="q", mode="bound")
    log.log_step(run_id, _step("1", "a"))
    # Another process reading now (the run is not finished) sees the run and its step.
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone() == ("running",)
        assert other.execute("SELECT COUNT(*) FROM steps WHERE run_id = ?", (run_id,)).fetchone() == (1,)


def test_runs_are_listed_newest_first_with_their_step_counts(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "runs.sqlite")
    older = log.start_run(query="first", mode="bound", routine_id="r")
    log.log_step(older, _step("1", "a"))
    log.log_step(older, _step("2", "b"))
    log.finish_run(older, status="failed", error="downstream server toy: connection lost")
    newer = log.start_run(query="second", mode="model")
    rows = log.list_runs()
    assert [r["id"] for r in rows] == [newer, older]
    assert [r["steps"] for r in rows] == [0, 2]
    assert rows[1]["error"] == "downstream server toy: connection lost"
    assert [r["id"] for r in log.list_runs(limit=1)] == [newer]


def test_a_unique_prefix_finds_a_run_and_a_bad_id_says_what_to_do(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "runs.sqlite")
    run_id = log.start_run(query="q", mode="bound")
    assert log.get_run(run_id[:6])["id"] == run_id
    with pytest.raises(KeyError, match="routine runs list"):
        log.get_run("nope")


def test_an_ambiguous_prefix_is_refused(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "runs.sqlite")
    for _ in range(40):  # 40 random hex ids: two share a first character
        log.start_run(query="q", mode="bound")
    firsts = [r["id"][0] for r in log.list_runs(limit=100)]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(KeyError, match="ambiguous"):
        log.get_run(shared)


def test_sequence_numbers_continue_after_the_log_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    run_id = RunLog(path).start_run(query="q", mode="model")
    first = RunLog(path)
    first.log_step(run_id, _step("1", "a"))
    second = RunLog(path)  # e.g. a second server process writing to the same log
    second.log_step(run_id, _step("2", "b"))
    assert [s["seq"] for s in RunLog(path).get_run(run_id)["steps"]] == [1, 2]


def test_a_log_written_before_observations_were_kept_opens_and_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE runs (id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, routine_id TEXT,
            routine_version INTEGER, query TEXT NOT NULL, mode TEXT NOT NULL, backend TEXT, user_id TEXT, inputs TEXT,
            status TEXT NOT NULL DEFAULT 'running', answer TEXT, error TEXT);
        CREATE TABLE steps (run_id TEXT NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL, step TEXT,
            source TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, raw_output TEXT, tool TEXT, arguments TEXT,
            resolved_arguments TEXT, result TEXT, error TEXT, error_kind TEXT, prompt_chars INTEGER,
            prompt_tokens INTEGER, output_tokens INTEGER, model_latency_s REAL, tool_latency_s REAL,
            created_at REAL NOT NULL, PRIMARY KEY (run_id, seq));
        INSERT INTO runs (id, started_at, query, mode, status, answer) VALUES ('old1', 1.0, 'q', 'bound', 'finished', 'a');
        INSERT INTO steps (run_id, seq, step, source, tool, arguments, created_at)
            VALUES ('old1', 1, '1', 'bound', 'summarize', '{"x": 1}', 1.0);
    """)
    db.commit()
    db.close()
    log = RunLog(path)
    old = log.trajectory("old1")
    assert [(c.step, c.tool, c.arguments, c.observation) for c in old.calls] == [("1", "summarize", {"x": 1}, "")]
    assert old.answer == "a" and old.system == {}
    run_id = log.start_run(query="new", mode="model", system={"user_id": "u-1"})
    log.log_step(run_id, _step("1", "search_employee", observation="memory_search_employee = {}",
                               next_tools=("search_employee",)))
    new = log.trajectory(run_id)
    assert new.system == {"user_id": "u-1"} and new.calls[0].next_tools == ("search_employee",)
    assert new.calls[0].observation == "memory_search_employee = {}"
