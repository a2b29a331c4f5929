"""``routine run`` and ``routine runs list|show`` through the real entry point, against the toy downstream
server started on stdio from a Claude-Desktop servers file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.fixtures.toy_server import CRASH, SALARY_ROUTINE, stdio_config

ADA = ["--routine", str(SALARY_ROUTINE), "--query", "What does Ada earn?", "--user-id", "u-hr", "--mode", "bound"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROUTINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def servers(tmp_path: Path) -> Path:
    path = tmp_path / "servers.json"
    path.write_text(json.dumps(stdio_config()), encoding="utf-8")
    return path




def test_a_bound_run_prints_each_step_and_the_answer_and_the_log_reads_it_back(
    cli: Cli, servers: Path, data_dir: Path
) -> None:
    code, out, err = cli("run", *ADA, "--servers", str(servers),
                             "--inputs", '{"employee_name": "Ada"}')
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:5] == [
        "Routine example.salary (bound mode)",
        '  step 1 [bound] get_user_profile({"user_id": "u-hr"})',
        '  step 2 [bound] search_employee({"name": "Ada"})',
        '  step 3-1_1 [bound] get_salary({"employee_id": "E-001"})',
        '  step 4 [bound] summarize({"topic": "salary", "data": "memory_get_salary"})',  # the result by reference
    ]
    assert lines[6] == "Answer: salary: employee_id=E-001, name=Ada Lovelace, salary=98000"
    run_id = re.fullmatch(r"\(run ([0-9a-f]{12})\)", lines[7]).group(1)  # type: ignore[union-attr]
    assert (data_dir / "runs.sqlite").exists()

    code, out, _ = cli("runs", "list")
    assert code == 0
    (row,) = out.splitlines()
    assert row.startswith(f"{run_id}  finished  bound   example.salary") and "4 steps" in row
    assert row.endswith("What does Ada earn?")

    code, out, _ = cli("runs", "show", run_id[:5])
    shown = json.loads(out)
    assert (shown["id"], shown["status"], shown["mode"], shown["backend"], shown["user_id"]) == (
        run_id, "finished", "bound", "none", "u-hr")
    assert shown["inputs"] == {"employee_name": "Ada"}
    assert [s["tool"] for s in shown["steps"]] == ["get_user_profile", "search_employee", "get_salary", "summarize"]
    assert shown["steps"][2]["result"] == {"employee_id": "E-001", "name": "Ada Lovelace", "salary": 98000}


def test_the_servers_file_can_come_from_the_environment_and_json_output_has_the_trajectory(
    monkeypatch: pytest.MonkeyPatch, cli: Cli, servers: Path
) -> None:
    monkeypatch.setenv("ROUTINE_SERVERS_FILE", str(servers))
    code, out, _ = cli("run", *ADA, "--inputs", '{"employee_name": "Alan"}', "--json")
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "finished" and "87000" in result["answer"]
    assert [c["step"] for c in result["trajectory"]] == ["1", "2", "3-1_1", "4"]
    assert result["trajectory"][1]["result"] == {"employee_id": "E-002", "name": "Alan Turing"}
    assert list(result["trajectory"][0]) == ["step", "name", "arguments", "resolved_arguments", "result",
                                             "observation", "source", "next_tools"]  # the shape scripts read


def test_a_run_whose_server_crashes_fails_with_the_downstream_error_and_is_logged(
    cli: Cli, servers: Path
) -> None:
    code, out, err = cli("run", *ADA, "--servers", str(servers),
                             "--inputs", json.dumps({"employee_name": CRASH}))
    assert code == 1
    assert '  step 1 [bound] get_user_profile({"user_id": "u-hr"})' in out
    assert "    ! downstream error: downstream server toy/search_employee:" in out
    assert "Run failed: downstream server toy/search_employee:" in err
    run_id = re.search(r"`routine runs show ([0-9a-f]{12})`", err).group(1)  # type: ignore[union-attr]
    code, out, _ = cli("runs", "show", run_id)
    shown = json.loads(out)
    assert shown["status"] == "failed" and [s["error_kind"] for s in shown["steps"]] == [None, "downstream"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inputs", '{"employee_name": "Ada"}'], "no downstream servers: pass --servers FILE or set ROUTINE_SERVERS_FILE"),
        (["--servers", "/nonexistent/servers.json"], "servers file /nonexistent/servers.json not found"),
        (["--servers", "SERVERS"], "bound mode needs the Routine's inputs: employee_name; pass them as inputs"),
        (["--servers", "SERVERS", "--mode", "auto"], "--mode must be one of model, hybrid, bound"),
    ],
)
def test_what_the_user_must_fix_is_one_line_not_a_traceback(
    cli: Cli, servers: Path, args: list[str], message: str
) -> None:
    args = [str(servers) if a == "SERVERS" else a for a in args]
    code, _, err = cli("run", *ADA, *args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_showing_an_unknown_run_says_how_to_find_one(cli: Cli) -> None:
    code, _, err = cli("runs", "show", "feedbeef")
    assert code == 2 and "no run 'feedbeef'" in err and "routine runs list" in err
