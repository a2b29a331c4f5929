"""``routine routines ...``, ``routine retrieve`` and ``routine plan`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROUTINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"




def test_add_list_show_rm(cli: Cli, data_dir: Path) -> None:
    salary = str(EXAMPLES / "salary.json")
    assert cli("routines", "add", salary, "--tools", str(EXAMPLES / "tools.json"))[1] == \
        "saved example.salary version 1\n"
    assert cli("routines", "add", salary)[1] == "unchanged example.salary version 1\n"
    assert (data_dir / "routines.sqlite").exists()
    code, out, _ = cli("routines", "list")
    assert code == 0 and out == "example.salary\tv1\t6 steps\tSalary enquiry\n"
    code, out, _ = cli("routines", "show", "example.salary", "--text")
    assert out.startswith("Step 1. Get requester:") and "and end the workflow;" in out
    code, out, _ = cli("routines", "show", "example.salary")
    assert json.loads(out)["version"] == 1
    assert cli("routines", "rm", "example.salary")[1] == "deleted example.salary (1 version)\n"
    code, _, err = cli("routines", "show", "example.salary")
    assert code == 2 and err == "error: no Routine 'example.salary'; the store is empty\n"


def test_the_store_is_where_the_env_file_says(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: the store commands read their settings as the server does, ``.env`` included."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"ROUTINE_DATA_DIR={tmp_path / 'from-env'}\n")
    monkeypatch.chdir(project)
    monkeypatch.delenv("ROUTINE_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # were .env ignored, the store would land in ~/.routine
    assert cli("routines", "add", str(EXAMPLES / "salary.json"))[1] == "saved example.salary version 1\n"
    assert (tmp_path / "from-env" / "routines.sqlite").exists()
    assert cli("routines", "list")[1] == "example.salary\tv1\t6 steps\tSalary enquiry\n"


def test_invalid_routine_is_one_clear_error(
    cli: Cli, tmp_path: Path
) -> None:
    bad = json.loads((EXAMPLES / "salary.json").read_text())
    bad["steps"][1]["tool"] = "lookup_employee"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    code, out, err = cli("routines", "add", str(path), "--tools", str(EXAMPLES / "tools.json"))
    assert code == 2 and out == ""
    assert "was not saved" in err and "did you mean search_employee" in err and "Traceback" not in err


def test_export_then_import(cli: Cli, tmp_path: Path) -> None:
    cli("routines", "add", str(EXAMPLES / "salary.json"))
    assert cli("routines", "export", str(tmp_path / "out"))[0] == 0
    assert (tmp_path / "out" / "example.salary.json").exists()
    cli("routines", "rm", "example.salary")
    code, out, _ = cli("routines", "import", str(tmp_path / "out"))
    assert code == 0 and out == "imported 1 Routine(s): example.salary v1\n"


def test_plan_with_scripted_backend_and_save(
    cli: Cli, tmp_path: Path
) -> None:
    answer = json.loads((EXAMPLES / "salary.json").read_text())
    for key in ("id", "inputs"):
        answer.pop(key)
    wrong = json.loads(json.dumps(answer))
    wrong["steps"][1]["tool"] = "lookup_employee"
    draft = tmp_path / "draft.txt"
    draft.write_text("Salary enquiry: who asks, find the employee, salary for HR else the band, summarise.")
    replies = json.dumps([json.dumps(wrong), json.dumps(answer)])
    code, out, err = cli("plan", "--draft", str(draft), "--tools", str(EXAMPLES / "tools.json"),
                             "--backend", "scripted", "--option", f"replies={replies}", "--bind", "--id", "hr.salary",
                             "--save")
    assert code == 0, err
    assert out.startswith("Step 1. Get requester:")
    assert "2 attempt(s)" in err and "saved hr.salary version 1" in err
    assert cli("routines", "list")[1].startswith("hr.salary\tv1")


def test_plan_that_never_validates_exits_1(
    cli: Cli, tmp_path: Path
) -> None:
    draft = tmp_path / "draft.txt"
    draft.write_text("anything")
    replies = json.dumps(["no JSON"])
    code, out, err = cli("plan", "--draft", str(draft), "--tools", str(EXAMPLES / "tools.json"),
                             "--backend", "scripted", "--option", f"replies={replies}", "--max-repairs", "0", "--save")
    assert code == 1 and out == "no JSON\n" and "[unreadable]" in err
    assert cli("routines", "list")[1] == ""


@pytest.mark.model
def test_retrieve_with_the_bundled_model(cli: Cli) -> None:
    cli("routines", "add", str(EXAMPLES / "salary.json"))
    code, out, _ = cli("retrieve", "What is the salary of employee Ana Lopez?",
                           "--threshold", "0.05")
    assert code == 0 and out.split("\t")[1] == "example.salary"
    code, _, err = cli("retrieve", "What is the salary of Ana?", "--threshold", "0.99")
    assert code == 1 and "no Routine matches well enough" in err


def test_examples_import_list_rm(cli: Cli, tmp_path: Path) -> None:
    cli("routines", "add", str(EXAMPLES / "salary.json"))
    data = tmp_path / "distill.jsonl"
    data.write_text(json.dumps({"query": "How much does Ana earn?", "routine_id": "example.salary"}) + "\n"
                    + json.dumps({"query": "Book a flight to Oslo", "routine_id": "travel.booking"}) + "\n")
    code, out, err = cli("routines", "examples", "import", str(data))
    assert code == 2 and out == "" and "no stored Routine 'travel.booking'" in err and "--skip-unknown" in err
    code, out, err = cli("routines", "examples", "import", str(data), "--skip-unknown")
    assert code == 0 and out == "imported 1 example question(s) from distill.jsonl\n"
    assert err == "skipped examples of Routines that are not stored: travel.booking (1)\n"
    assert cli("routines", "examples", "list")[1] == "example.salary\t1\n"
    code, out, _ = cli("routines", "examples", "list", "example.salary", "--json")
    assert json.loads(out) == [{"routine_id": "example.salary", "text": "How much does Ana earn?", "source": "distill.jsonl"}]
    assert cli("routines", "examples", "rm")[0] == 2  # says what to remove
    code, out, _ = cli("routines", "examples", "rm", "--source", "distill.jsonl")
    assert code == 0 and out == "deleted 1 example question(s)\n"
    code, out, err = cli("routines", "examples", "list")
    assert code == 0 and out == "" and err == "no example questions stored\n"


def test_add_without_tools_checks_against_the_configured_servers(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15, item 8: with a servers file set, a Routine naming a tool no server has is not saved."""
    from tests.fixtures.toy_server import stdio_config

    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps(stdio_config()))
    monkeypatch.setenv("ROUTINE_SERVERS_FILE", str(servers))
    bad = json.loads((EXAMPLES / "salary.json").read_text())
    bad["steps"][1]["tool"] = "lookup_employee"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    code, out, err = cli("routines", "add", str(path))
    assert code == 2 and out == ""
    assert "tool 'lookup_employee' is not in the tool list" in err and "Traceback" not in err
    assert cli("routines", "add", str(EXAMPLES / "salary.json"))[1] == "saved example.salary version 1\n"
    servers.write_text(json.dumps({"mcpServers": {"gone": {"command": "/nonexistent/server"}}}))
    code, _, err = cli("routines", "add", str(EXAMPLES / "salary.json"))
    assert code == 2 and "give --tools" in err and "Traceback" not in err
