"""``routine render|parse|validate|flatten|schema``: output, exit codes, and one clear line for a bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from routines.model import Routine
from routines.render import render_routine
from server.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "routines" / "examples"
SALARY = EXAMPLES / "salary.json"
TOOLS = EXAMPLES / "tools.json"
SCRIPT = Path(sys.executable).parent / "routine"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    def run(*args: str | Path) -> Result:
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        code = info.value.code
        return Result(
            code if isinstance(code, int) else (0 if code is None else 1), captured.out, captured.err
        )

    return run


def tools_without(tmp_path: Path, name: str) -> Path:
    tools = [t for t in json.loads(TOOLS.read_text(encoding="utf-8")) if t["name"] != name]
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(tools), encoding="utf-8")
    return path


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out


# ---- the commands -------------------------------------------------------------------------------------


def test_render(cli) -> None:
    result = cli("render", SALARY)
    assert result.code == 0
    assert result.out.rstrip("\n") == render_routine(Routine.from_file(SALARY))
    assert (
        result.out.splitlines()[0]
        == "Step 1. Get requester: Look up the current user's role, use the get_user_profile tool;"
    )


def test_render_switches(cli) -> None:
    with_io = cli("render", SALARY, "--io").out
    assert "[input: employee name from the question] [output: employee id]" in with_io
    no_tools = cli("render", SALARY, "--no-tools").out
    assert "get_salary" not in no_tools and " tool" not in no_tools
    both = cli("render", SALARY, "--io", "--no-tools").out
    assert "[input:" in both and "search_employee" not in both


def test_render_reads_the_papers_bare_step_list(cli, tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    path.write_text(
        json.dumps([{"step": "1", "name": "Read", "tool": "read_pdf", "type": "finish"}]), encoding="utf-8"
    )
    result = cli("render", path)
    assert (result.code, result.out.strip()) == (
        0,
        "Step 1. Read, use the read_pdf tool, and end the workflow;",
    )


def test_parse_prints_the_routine_as_json(cli, tmp_path: Path) -> None:
    path = tmp_path / "salary.txt"
    path.write_text(render_routine(Routine.from_file(SALARY), io=True), encoding="utf-8")
    result = cli("parse", path)
    assert result.code == 0
    parsed = Routine.model_validate_json(result.out)
    original = Routine.from_file(SALARY)
    fields = ("step", "name", "description", "tool", "type", "input", "output")
    assert [[getattr(s, f) for f in fields] for s in parsed.steps] == [
        [getattr(s, f) for f in fields] for s in original.steps
    ]
    assert parsed.name == "salary"  # named after the file


def test_render_accepts_the_natural_language_form_too(cli, tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("- Step 1. Answer: Reply，using the summarize tool, terminate\n", encoding="utf-8")
    assert (
        cli("render", path).out.strip()
        == "Step 1. Answer: Reply, use the summarize tool, and end the workflow;"
    )


def test_validate_clean_routine(cli) -> None:
    result = cli("validate", SALARY, "--tools", TOOLS)
    assert result.code == 0
    assert result.out.strip() == "ok: no findings"


def test_validate_names_the_step_whose_tool_is_missing(cli, tmp_path: Path) -> None:
    result = cli("validate", SALARY, "--tools", tools_without(tmp_path, "get_salary_band"))
    assert result.code == 1
    assert result.out.strip().splitlines() == [
        "error: step 3-2_1: tool 'get_salary_band' is not in the tool list; did you mean get_salary? [unknown_tool]"
    ]


def test_validate_accepts_a_tools_list_result(cli, tmp_path: Path) -> None:
    path = tmp_path / "listed.json"
    path.write_text(json.dumps({"tools": json.loads(TOOLS.read_text(encoding="utf-8"))}), encoding="utf-8")
    assert cli("validate", SALARY, "--tools", path).code == 0


def test_validate_warnings_alone_exit_zero(cli, tmp_path: Path) -> None:
    data = json.loads(SALARY.read_text(encoding="utf-8"))
    del data["steps"][0]["args"]
    path = tmp_path / "weak.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = cli("validate", path, "--tools", TOOLS)
    assert result.code == 0
    assert result.out.startswith("warning: step 1: required argument(s) user_id")


def test_validate_structural_errors_without_a_tool_list(cli, tmp_path: Path) -> None:
    data = json.loads(SALARY.read_text(encoding="utf-8"))
    data["steps"][-1]["type"] = "node"
    path = tmp_path / "nofinish.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = cli("validate", path)
    assert result.code == 1
    assert "[no_finish]" in result.out
    assert "no --tools given" in result.err


def test_flatten(cli) -> None:
    result = cli("flatten", SALARY)
    assert result.code == 0
    variants = [Routine.model_validate(v) for v in json.loads(result.out)]
    assert [v.id for v in variants] == ["example.salary/3-1", "example.salary/3-2"]
    assert [v.steps[2].tool for v in variants] == ["get_salary", "get_salary_band"]


def test_schema(cli) -> None:
    result = cli("schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert "steps" in schema["properties"] and "Step" in schema["$defs"]


# ---- bad input: one clear line, exit code 2 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"steps": [', "error: not valid JSON: Expecting value (line 1, column 12)"),
        (
            '{"steps": [{"step": "one", "name": "x"}]}',
            "error: invalid Routine: steps.0.step: Value error, step label 'one'",
        ),
        (
            '{"steps": [{"step": "1", "type": "loop"}]}',
            "error: invalid Routine: steps.0.type: Input should be",
        ),
        ('{"steps": [], "colour": "red"}', "error: invalid Routine: colour: Extra inputs are not permitted"),
        ("42", "error: invalid Routine:"),
    ],
)
@pytest.mark.parametrize("command", ["render", "validate", "flatten"])
def test_bad_routine_file(cli, tmp_path: Path, command: str, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    result = cli(command, path)
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith(message)
    assert len(result.err.strip().splitlines()) == 1
    no_traceback(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("render", "missing.json"), "error: file not found: missing.json"),
        (("parse", "missing.txt"), "error: file not found: missing.txt"),
        (("validate", str(SALARY), "--tools", "missing.json"), "error: file not found: missing.json"),
    ],
)
def test_missing_file(cli, args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    assert (result.code, result.err.strip()) == (2, message)


def test_directory_and_binary_files(cli, tmp_path: Path) -> None:
    result = cli("render", tmp_path)
    assert result.code == 2 and result.err.startswith(f"error: cannot read {tmp_path}")
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00")
    result = cli("render", path)
    assert (result.code, result.err.strip()) == (
        2,
        "error: not a UTF-8 text file (invalid start byte at byte 0)",
    )


def test_text_without_steps(cli, tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("Just some notes.\n", encoding="utf-8")
    result = cli("parse", path)
    assert result.code == 2
    assert result.err.startswith("error: no step lines found; write one step a line as 'Step 1.")


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ('{"name": "x"}', "a tool list must be a JSON list"),
        ('["get_salary"]', "tool #1 is 'get_salary', not a tool schema"),
        ('[{"description": "nameless"}]', "tool #1 has no 'name'"),
        ("[", "not valid JSON"),
    ],
)
def test_bad_tool_list(cli, tmp_path: Path, tools: str, message: str) -> None:
    path = tmp_path / "tools.json"
    path.write_text(tools, encoding="utf-8")
    result = cli("validate", SALARY, "--tools", path)
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    no_traceback(result)


def test_usage_errors(cli) -> None:
    unknown = cli("bogus")
    assert unknown.code == 2 and "No such command 'bogus'" in unknown.err
    missing = cli("render")
    assert missing.code == 2 and "Missing argument" in missing.err
    for result in (unknown, missing):
        no_traceback(result)


def test_help_exits_zero(cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for command in ("render", "parse", "validate", "flatten", "schema"):
        assert command in result.out


# ---- the installed script -------------------------------------------------------------------------------


@pytest.mark.skipif(not SCRIPT.exists(), reason="the routine script is not installed in this environment")
def test_installed_script_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": [{"step": "x"}]}', encoding="utf-8")
    tools = tools_without(tmp_path, "summarize")
    runs = [  # started together: each start imports the whole CLI
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in ([SCRIPT, "validate", SALARY, "--tools", tools], [SCRIPT, "render", bad])
    ]
    (out1, err1), (_, err2) = (run.communicate(timeout=120) for run in runs)
    assert runs[0].returncode == 1
    assert "error: step 4: tool 'summarize' is not in the tool list" in out1
    assert runs[1].returncode == 2
    assert err2.startswith("error: invalid Routine: steps.0.step")
    assert "Traceback" not in err1 + err2
