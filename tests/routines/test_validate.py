"""Validation: every finding code is triggered here, with the step it names and its severity."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import routines.validate as validate_module
from routines.backends.base import ToolSpec
from routines.model import Routine
from routines.validate import Finding, Report, load_tools, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"
SALARY: dict[str, Any] = json.loads((EXAMPLES / "salary.json").read_text(encoding="utf-8"))
TOOLS = load_tools(EXAMPLES / "tools.json")

Edit = Callable[[dict[str, Any]], None]


def step(data: dict[str, Any], label: str) -> dict[str, Any]:
    return next(s for s in data["steps"] if s["step"] == label)


def setting(label: str, **fields: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        step(data, label).update(fields)

    return edit


def dropping(label: str, *keys: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        for key in keys:
            step(data, label).pop(key, None)

    return edit


def inserting(after: str, new: dict[str, Any]) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        labels = [s["step"] for s in data["steps"]]
        data["steps"].insert(labels.index(after) + 1, new)

    return edit


def removing(*labels: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["steps"] = [s for s in data["steps"] if s["step"] not in labels]

    return edit


def relabel(old: str, new: str) -> Edit:
    return setting(old, step=new)


def both(*edits: Edit) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        for e in edits:
            e(data)

    return edit


def run(edit: Edit, tools: list[Any] = TOOLS) -> Report:
    data = copy.deepcopy(SALARY)
    edit(data)
    return validate(Routine.from_data(data), tools)


def node(label: str, tool: str = "summarize", kind: str = "branchnode", **more: Any) -> dict[str, Any]:
    return {"step": label, "name": f"Step {label}", "tool": tool, "type": kind, "input": "described", **more}


# (case id, edit of the salary example, code, severity, step the finding names)
CASES: list[tuple[str, Edit, str, str, str | None]] = [
    ("no steps", lambda d: d.update(steps=[]), "no_steps", "error", None),
    ("duplicate number", inserting("2", node("2", "search_employee", "node")), "duplicate_step", "error", "2"),
    ("main steps out of order", lambda d: d["steps"].insert(0, d["steps"].pop(1)), "step_order", "warning", None),
    ("main step number skipped", relabel("4", "5"), "step_gap", "error", None),
    ("branch of a missing main step", inserting("4", node("7-1_1")), "orphan_branch", "error", "7-1_1"),
    ("branch off a node step", setting("3", type="node", tool="summarize"), "orphan_branch", "error", "3-1_1"),
    ("branch step typed node", setting("3-2_1", type="node"), "branch_type", "error", "3-2_1"),
    ("main step typed branchnode", setting("2", type="branchnode"), "branch_type", "error", "2"),
    ("branch step without branches", both(removing("3-1_1", "3-2_1"), setting("4", args={"topic": "x", "data": "x"})),
     "empty_branch", "error", "3"),
    ("branch numbers skip one", relabel("3-2_1", "3-3_1"), "branch_gap", "error", "3"),
    ("branch step index skips one", inserting("3-1_1", node("3-1_3", "get_salary_band")), "branch_gap", "error",
     "3-1_1"),
    ("only one branch", both(removing("3-2_1"), dropping("3-1_1", "when")), "single_branch", "warning", "3"),
    ("no finish step", setting("4", type="node"), "no_finish", "error", None),
    ("main step after a finish", setting("2", type="finish"), "after_finish", "error", "4"),
    ("branch step after a branch finish", both(setting("3-1_1", type="finish"), inserting("3-1_1", node("3-1_2"))),
     "after_finish", "error", "3-1_2"),
    ("every branch finishes", both(setting("3-1_1", type="finish"), setting("3-2_1", type="finish")),
     "after_finish", "error", "4"),
    ("step without a name", setting("2", name=""), "no_name", "error", "2"),
    ("colon in a name", setting("2", name="Find: employee"), "name_colon", "error", "2"),
    ("full-width colon in a name", setting("2", name="Find：employee"), "name_colon", "error", "2"),
    ("tool on a branch step", setting("3", tool="get_salary"), "branch_tool", "warning", "3"),
    ("node without a tool", dropping("2", "tool"), "missing_tool", "error", "2"),
    ("finish without a tool", dropping("4", "tool"), "missing_tool", "error", "4"),
    ("two tools in one string", setting("2", tool="search_employee, get_salary"), "multiple_tools", "error", "2"),
    ("two tools as a list", setting("2", tool=["search_employee", "get_salary"]), "multiple_tools", "error", "2"),
    ("two tools joined by 'and'", setting("2", tool="search_employee and get_salary"), "multiple_tools", "error",
     "2"),
    ("tool not in the list", setting("2", tool="search_employees"), "unknown_tool", "error", "2"),
    ("argument the tool does not have", setting("2", args={"nme": "{{inputs.employee_name}}"}), "unknown_arg",
     "error", "2"),
    ("required argument neither bound nor described", dropping("1", "args"), "unbound_required", "warning", "1"),
    ("unknown reference root", setting("2", args={"name": "{{user.name}}"}), "bad_ref", "error", "2"),
    ("reference to a missing step", setting("4", args={"topic": "x", "data": "{{steps.9.x}}"}), "bad_ref", "error",
     "4"),
    ("malformed reference", setting("2", args={"name": "{{inputs.employee_name"}), "bad_ref", "error", "2"),
    ("malformed reference beside a good one", setting("2", args={"name": "{{inputs.employee_name}} {{steps.1"}),
     "bad_ref", "error", "2"),
    ("malformed reference nested", setting("4", args={"topic": "x", "data": {"rows": ["{{steps.3.x"]}}), "bad_ref",
     "error", "4"),
    ("reference to a later step", setting("2", args={"name": "{{steps.4.text}}"}), "forward_ref", "error", "2"),
    ("reference to itself", setting("2", args={"name": "{{steps.2.name}}"}), "forward_ref", "error", "2"),
    ("branch refers to its own branch point", inserting("3-1_1", node("3-1_2", args={"topic": "x", "data": "{{steps.3}}"})),
     "forward_ref", "error", "3-1_2"),
    ("main step refers into a branch", setting("4", args={"topic": "x", "data": "{{steps.3-1_1.salary}}"}),
     "cross_branch_ref", "error", "4"),
    ("branch refers into a sibling branch", setting("3-2_1", args={"employee_id": "{{steps.3-1_1.id}}"}),
     "cross_branch_ref", "error", "3-2_1"),
    ("binding to an undeclared input", setting("2", args={"name": "{{inputs.full_name}}"}), "undeclared_input",
     "error", "2"),
    ("condition on an undeclared input", setting("3-1_1", when="inputs.department == 'hr'"), "undeclared_input",
     "error", "3-1_1"),
    ("condition with a forward reference", setting("3-1_1", when="{{steps.4.ok}}"), "forward_ref", "error", "3-1_1"),
    ("one branch lacks a condition", dropping("3-1_1", "when"), "no_when", "warning", "3-1_1"),
    ("condition on a main step", setting("2", when="{{steps.1.role}} == 'hr'"), "when_ignored", "warning", "2"),
    ("condition syntax error", setting("3-1_1", when="{{steps.1.role}} = 'hr'"), "when_syntax", "error", "3-1_1"),
    ("condition tries eval", setting("3-1_1", when="__import__('os').system('ls')"), "when_syntax", "error",
     "3-1_1"),
]  # fmt: skip


def test_the_example_is_clean() -> None:
    report = validate(Routine.from_data(SALARY), TOOLS)
    assert report.findings == []
    assert report.ok
    assert report.format() == "ok: no findings"


@pytest.mark.parametrize(
    ("edit", "code", "severity", "label"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_finding(edit: Edit, code: str, severity: str, label: str | None) -> None:
    report = run(edit)
    hits = [f for f in report.findings if f.code == code]
    assert hits, report.format()
    assert any(f.step == label for f in hits), report.format()
    hit = next(f for f in hits if f.step == label)
    assert hit.severity == severity
    assert hit in (report.errors if severity == "error" else report.warnings)
    assert ";" in hit.message, f"the message should say how to fix it: {hit.message}"
    shown = str(hit)
    assert shown.startswith(f"{severity}: ") and f"[{code}]" in shown
    assert (f"step {label}:" in shown) if label else ("routine:" in shown)
    assert report.ok == (not report.errors)


def test_every_finding_code_has_a_case() -> None:
    source = Path(validate_module.__file__).read_text(encoding="utf-8")
    codes = set(re.findall(r'self\.add\(\s*"(?:error|warning)",\s*"([a-z_]+)"', source))
    assert len(codes) >= 25
    assert codes == {c[2] for c in CASES}


def test_warnings_alone_leave_the_routine_usable() -> None:
    report = run(dropping("1", "args"))
    assert report.ok
    assert report.errors == []
    assert [f.code for f in report.warnings] == ["unbound_required"]


def test_described_input_silences_the_unbound_warning() -> None:
    assert run(both(dropping("1", "args"), setting("1", input="the current user id"))).findings == []


def test_unknown_tool_suggests_close_names() -> None:
    (finding,) = run(setting("2", tool="search_employees")).errors
    assert "did you mean search_employee" in finding.message


def test_unknown_tool_lists_what_is_available_when_nothing_is_close() -> None:
    (finding,) = run(setting("2", tool="zzz")).errors
    assert "available:" in finding.message and "get_salary" in finding.message


def test_validate_names_the_step_of_a_tool_missing_from_the_list() -> None:
    report = run(lambda d: None, [t for t in TOOLS if t.name != "get_salary_band"])
    assert [(f.code, f.step) for f in report.errors] == [("unknown_tool", "3-2_1")]
    assert "step 3-2_1" in report.format()


def test_without_a_tool_list_tool_names_are_not_checked() -> None:
    assert run(setting("2", tool="anything"), []).findings == []


def test_argument_of_a_tool_without_parameters() -> None:
    tools = [*TOOLS, ToolSpec("ping", "", {"type": "object", "properties": {}})]
    report = run(setting("1", tool="ping", args={"user_id": "{{system.user_id}}"}), tools)
    assert [(f.code, f.step) for f in report.errors] == [("unknown_arg", "1")]
    assert "parameters: none" in report.errors[0].message


def test_open_schema_accepts_any_argument() -> None:
    tools = [*TOOLS, ToolSpec("ping", "", {"type": "object", "additionalProperties": True})]
    assert run(setting("1", tool="ping", args={"anything": 1}), tools).findings == []


def test_last_branch_may_go_without_a_condition() -> None:
    assert run(dropping("3-2_1", "when")).findings == []


def test_step_refs_to_branch_point_and_own_branch_are_fine() -> None:
    edit = both(
        inserting("3-1_1", node("3-1_2", args={"topic": "x", "data": "{{steps.3-1_1.salary}}"})),
        setting("4", args={"topic": "salary", "data": "{{steps.3}}"}),
    )
    assert run(edit).findings == []


def test_report_keeps_errors_and_warnings_apart() -> None:
    report = run(both(setting("2", tool="nope"), dropping("1", "args"), setting("3", tool="get_salary")))
    assert {f.code for f in report.errors} == {"unknown_tool"}
    assert {f.code for f in report.warnings} == {"unbound_required", "branch_tool"}
    assert report.codes() == {"unknown_tool", "unbound_required", "branch_tool"}
    assert not report.ok
    lines = report.format().splitlines()
    assert len(lines) == 3 and sum(ln.startswith("error:") for ln in lines) == 1
    assert report.as_dicts()[0].keys() == {"severity", "code", "step", "message"}
    assert isinstance(report.findings[0], Finding)


# ---- tool lists -----------------------------------------------------------------------------------------


def test_load_tools_accepts_the_shapes_mcp_and_openai_use(tmp_path: Path) -> None:
    raw = json.loads((EXAMPLES / "tools.json").read_text(encoding="utf-8"))
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"tools": raw}), encoding="utf-8")
    from_result = load_tools(path)
    from_params = load_tools([{**t, "parameters": t.pop("inputSchema")} for t in copy.deepcopy(raw)])
    assert [t.name for t in from_result] == [t.name for t in TOOLS]
    assert from_params == TOOLS == load_tools(str(EXAMPLES / "tools.json"))
    assert load_tools(TOOLS) == TOOLS


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"name": "x"}, "JSON list"),
        ("not-a-file.json", None),
        (["get_salary"], "tool #1 is 'get_salary', not a tool schema"),
        ([{"description": "no name"}], "tool #1 has no 'name'"),
        ([{"name": ""}], "non-empty string"),
        ([{"name": "a", "inputSchema": ["x"]}], "must be a JSON object"),
    ],
)
def test_load_tools_refuses_bad_lists_clearly(source: Any, message: str | None) -> None:
    with pytest.raises((ValueError, OSError)) as info:
        load_tools(source)
    if message:
        assert message in str(info.value)


def test_validate_refuses_a_bad_tool_the_same_way() -> None:
    with pytest.raises(ValueError, match="tool #2 has no 'name'"):
        validate(Routine.from_data(SALARY), [TOOLS[0], {"inputSchema": {}}])


def test_validation_is_linear_in_the_number_of_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller-sent Routine must not be able to stall the server (issue 15, item 2): before, 800 steps took
    1.9M label parses. Counted in parses, not seconds, so the test does not depend on the machine."""
    from routines import model

    calls = 0
    parse = model.Label.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[model.Label], text: str) -> model.Label:
        nonlocal calls
        calls += 1
        return parse(cls, text)

    def routine(n: int) -> Routine:
        steps: list[dict[str, Any]] = [{"step": "1", "name": "Check", "type": "branch"}]
        for b in range(1, n // 2):
            steps.append({"step": f"1-{b}_1", "name": f"b{b}", "tool": "t", "type": "branchnode",
                          "args": {"x": "{{steps.1.y}}"}})
        steps += [{"step": str(i), "name": f"s{i}", "tool": "t", "args": {"x": f"{{{{steps.{i - 1}.y}}}}"}}
                  for i in range(2, n // 2)]
        steps.append({"step": str(n // 2), "name": "End", "tool": "t", "type": "finish"})
        return Routine.from_data({"name": "big", "steps": steps})

    big = routine(2000)
    monkeypatch.setattr(model.Label, "parse", classmethod(counting))
    report = validate(big)
    assert "step_gap" not in report.codes()
    assert calls < 10 * len(big.steps), f"{calls} label parses for {len(big.steps)} steps"
