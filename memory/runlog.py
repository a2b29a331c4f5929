"""The run log: every run and every attempt, in SQLite (like simonw/llm's logs.db, the audit trail).

Each attempt (:class:`routines.trajectory.StepRecord`) is committed as it happens, so a crash or a dead
downstream server loses nothing logged before. The completed attempts of a run are its trajectory
(:meth:`RunLog.trajectory`), the same record the executor returns: a logged run can be replayed, evaluated
or turned into training data without a second format.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from memory.files import private_file
from routines.trajectory import Call, StepRecord, Trajectory

__all__ = ["RunLog", "StepRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    routine_id TEXT,
    routine_version INTEGER,
    query TEXT NOT NULL,
    mode TEXT NOT NULL,
    backend TEXT,
    user_id TEXT,
    inputs TEXT,
    system TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    answer TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    step TEXT,
    source TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    raw_output TEXT,
    tool TEXT,
    arguments TEXT,
    resolved_arguments TEXT,
    result TEXT,
    error TEXT,
    error_kind TEXT,
    prompt_chars INTEGER,
    prompt_tokens INTEGER,
    output_tokens INTEGER,
    model_latency_s REAL,
    tool_latency_s REAL,
    observation TEXT,
    next_tools TEXT,
    model_arguments TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS steps_run ON steps(run_id);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
"""


_ADDED_COLUMNS = {"runs": {"system": "TEXT"},
                  "steps": {"observation": "TEXT", "next_tools": "TEXT", "model_arguments": "TEXT"}}
"""Columns added since the first release: an older log gets them on open (its rows keep NULL there)."""


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class RunLog:
    """SQLite log of runs. ``path=":memory:"`` keeps it in memory (tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            private_file(self.path)  # 0600: the log holds what tools returned
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL") if self.path != ":memory:" else None
        self._db.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in have:
                    try:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError as exc:  # another process added it just now
                        if "duplicate column" not in str(exc):
                            raise
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def start_run(
        self,
        *,
        query: str,
        mode: str,
        routine_id: str | None = None,
        routine_version: int | None = None,
        backend: str | None = None,
        user_id: str | None = None,
        inputs: dict[str, Any] | None = None,
        system: dict[str, Any] | None = None,
    ) -> str:
        run_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, started_at, routine_id, routine_version, query, mode, backend, user_id, inputs,"
                " system) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, time.time(), routine_id, routine_version, query, mode, backend, user_id, _dump(inputs),
                 _dump(system)),
            )
        return run_id

    def log_step(self, run_id: str, rec: StepRecord) -> None:
        # The sequence number is taken in the same statement, so several RunLog objects (or processes)
        # writing one run never collide.
        with self._lock:
            self._db.execute(
                "INSERT INTO steps (run_id, seq, step, source, attempt, raw_output, tool, arguments, resolved_arguments,"
                " result, error, error_kind, prompt_chars, prompt_tokens, output_tokens, model_latency_s, tool_latency_s,"
                " observation, next_tools, model_arguments, created_at)"
                " SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
                " FROM steps WHERE run_id = ?",
                (
                    run_id, rec.step, rec.source, rec.attempt, rec.raw_output, rec.tool, _dump(rec.arguments),
                    _dump(rec.resolved_arguments), _dump(rec.result), rec.error, rec.error_kind, rec.prompt_chars,
                    rec.prompt_tokens, rec.output_tokens, rec.model_latency_s, rec.tool_latency_s, rec.observation,
                    _dump(list(rec.next_tools)) if rec.next_tools else None, _dump(rec.extra.get("model_arguments")),
                    time.time(), run_id,
                ),
            )

    def finish_run(self, run_id: str, *, status: str, answer: str | None = None, error: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = ?, answer = ?, error = ?, finished_at = ? WHERE id = ?",
                (status, answer, error, time.time(), run_id),
            )

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT r.id, r.started_at, r.finished_at, r.routine_id, r.routine_version, r.query, r.mode, r.backend,"
            " r.status, r.error, (SELECT COUNT(*) FROM steps s WHERE s.run_id = r.id) AS steps"
            " FROM runs r ORDER BY r.started_at DESC LIMIT ?",
            (limit,),
        )
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def get_run(self, run_id: str) -> dict[str, Any]:
        cur = self._db.execute("SELECT * FROM runs WHERE id = ? OR id LIKE ?", (run_id, run_id + "%"))
        rows = cur.fetchall()
        if not rows:
            raise KeyError(f"no run {run_id!r} in the run log {self.path}; `routine runs list` shows the runs")
        if len(rows) > 1:
            raise KeyError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        run = dict(zip([c[0] for c in cur.description], rows[0]))
        run["inputs"] = _load(run["inputs"])
        run["system"] = _load(run.get("system"))
        cur = self._db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run["id"],))
        cols = [c[0] for c in cur.description]
        steps = []
        for row in cur.fetchall():
            step = dict(zip(cols, row))
            for key in ("arguments", "resolved_arguments", "result", "next_tools", "model_arguments"):
                step[key] = _load(step[key])
            steps.append(step)
        run["steps"] = steps
        return run


    def trajectory(self, run_id: str) -> Trajectory:
        """A logged run as the executor returned it: its completed attempts, in order. Runs logged before the
        log kept observations have none (their calls show an empty observation)."""
        run = self.get_run(run_id)
        calls = tuple(
            Call(step=s["step"], tool=s["tool"], arguments=s["arguments"] or {}, observation=s["observation"] or "",
                 resolved_arguments=s["resolved_arguments"], result=s["result"], source=s["source"],
                 next_tools=tuple(s["next_tools"] or ()), model_arguments=s["model_arguments"])
            for s in run["steps"] if s["error"] is None and s["tool"] is not None and s["step"] is not None
        )
        return Trajectory(query=run["query"], calls=calls, routine_id=run["routine_id"], system=run["system"] or {},
                          inputs=run["inputs"] or {}, answer=run["answer"], query_id=run["id"])
