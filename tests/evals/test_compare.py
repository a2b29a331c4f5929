"""Pairing two per-step runs (evals/compare.py) on run files written as the report writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evals.compare import compare, main
from routines.errors import CallerError


def result(sid: str, step: str, tool: str, right: bool, tool_right: bool | None = None) -> dict[str, Any]:
    category = None if right else ("param.value" if tool_right in (None, True) else "tool.wrong")
    return {"id": sid, "routine_id": "hr.leave", "step": step, "expected": {"name": tool, "arguments": {}},
            "verdict": {"overall": right, "tool": right if tool_right is None else tool_right,
                        "category": category}}


def write_run(folder: Path, results: list[dict[str, Any]], kind: str = "steps") -> Path:
    (folder / "runs").mkdir(parents=True)
    path = folder / "runs" / "m__routine_branch__product-next.json"
    record = {"kind": kind, "model": "m", "config": "routine_branch", "constrained": "product/next", "results": results}
    path.write_text(json.dumps(record), encoding="utf-8")
    return folder


def test_two_runs_are_paired_by_sample(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [result("q1/0", "1", "search_employee", True),
                                   result("q1/1", "3-1_1", "get_leave_balance", False, tool_right=False),
                                   result("q2/0", "1", "search_employee", False)])
    b = write_run(tmp_path / "b", [result("q1/0", "1", "search_employee", False),
                                   result("q1/1", "3-1_1", "get_leave_balance", True),
                                   result("q2/0", "1", "search_employee", False)])
    c = compare(a, b)
    assert (c.samples, c.right, c.only) == (3, (1, 1), (1, 1))
    assert (c.branch_starts, c.branch_tool_right) == (1, (0, 1))
    assert c.steps == [("hr.leave", "1", 2, 1, 0), ("hr.leave", "3-1_1", 1, 0, 1)]
    assert c.errors[0] == {"get_leave_balance: tool.wrong": 1, "search_employee: param.value": 1}
    assert "right 1 / 1 (33.3% / 33.3%); only the first right 1, only the second 1" in c.render()


def test_the_command_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_run(tmp_path / "a", [result("q1/0", "1", "search_employee", True)])
    out = tmp_path / "cmp.json"
    assert main([str(a), str(a / "runs" / "m__routine_branch__product-next.json"), "--json", str(out)]) == 0
    assert "1 samples paired; right 1 / 1" in capsys.readouterr().out
    assert json.loads(out.read_text())["steps"] == [
        {"routine": "hr.leave", "step": "1", "samples": 1, "first": 1, "second": 1}]


def test_runs_that_do_not_pair_are_refused_with_what_to_do(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", [result("q1/0", "1", "search_employee", True)])
    b = write_run(tmp_path / "b", [result("q9/0", "1", "search_employee", True)])
    with pytest.raises(CallerError, match="do not cover the same samples"):
        compare(a, b)
    e2e = write_run(tmp_path / "e", [], kind="e2e")
    with pytest.raises(CallerError, match="not a per-step run"):
        compare(a, e2e)
    with pytest.raises(CallerError, match="exactly one run"):
        compare(a, tmp_path)
