"""The seven expert Routines: valid against the server's tools, bound, and 10 variants once flattened."""

from __future__ import annotations

import re
from pathlib import Path

import fastmcp
import pytest

from routines.flatten import flatten
from routines.render import parse_routine, render_routine
from routines.validate import validate
from scenarios.hr import load_draft, load_routines

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.anyio
async def test_every_routine_validates_against_the_live_tools(hr_client: fastmcp.Client) -> None:
    tools = [t.model_dump(by_alias=True) for t in await hr_client.list_tools()]
    for routine in load_routines():
        report = validate(routine, tools)
        assert report.findings == [], f"{routine.id}:\n{report.format()}"
        for variant in flatten(routine):
            assert validate(variant, tools).ok, variant.id


def test_seven_routines_three_branching_ten_flattened() -> None:
    routines = load_routines()
    assert len(routines) == 7
    assert sum(r.has_branches for r in routines) == 3
    variants = [v for r in routines for v in flatten(r)]
    assert len(variants) == 10
    for v in variants:
        tool_steps = [s for s in v.steps if s.tool]
        assert 4 <= len(tool_steps) <= 7, v.id
        assert v.steps[-1].type == "finish" and v.steps[-1].tool == "summarize", v.id


def test_every_step_is_bound_and_every_branch_has_a_condition() -> None:
    for routine in load_routines():
        for step in routine.steps:
            if step.type == "branch":
                assert len(routine.branches(step.label.main)) == 2, routine.id
                continue
            assert step.args is not None, f"{routine.id} step {step.step} has no args"
            if step.label.is_branch and step.label.index == 1:
                assert step.when, f"{routine.id} step {step.step} has no 'when'"


def test_natural_language_form_parses_back_to_the_same_steps() -> None:
    for routine in load_routines():
        for io in (False, True):
            back = parse_routine(render_routine(routine, io=io))
            fields = [(s.step, s.name, s.description, s.tool, s.type) for s in routine.steps]
            assert [(s.step, s.name, s.description, s.tool, s.type) for s in back.steps] == fields, routine.id


def test_each_routine_has_a_short_rough_draft() -> None:
    for routine in load_routines():
        draft = load_draft(routine.id or "")
        assert 150 < len(draft) < 1200, routine.id
        assert "{{" not in draft and "Step 1" not in draft


def test_core_packages_do_not_import_the_scenario() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+scenarios\b", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for package in ("routines", "memory")
                 for p in (ROOT / package).rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
