"""Each configuration and ablation shows what the paper says in place of the Routine, and nothing else
changes between them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evals.configs import CONFIGS, STEP_CONFIGS, RoutineCatalog, build_samples, resolve_configs
from evals.decompose import Sample, TrajectorySet
from routines.errors import CallerError
from tests.fixtures import eval_toy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tset(tmp_path: Path) -> TrajectorySet:
    return await eval_toy.trajectories(tmp_path)


def samples(tset: TrajectorySet, name: str, seed: int = 0, catalog: RoutineCatalog | None = None,
            tools_in_prompt: str = "all") -> dict[str, Sample]:
    """Under the paper's protocol (every tool listed) unless told: there only the Routine part differs."""
    made = build_samples(CONFIGS[name], tset.trajectories, tset.tools, catalog or eval_toy.catalog(), seed=seed,
                         tools_in_prompt=tools_in_prompt)
    return {s.id: s for s in made}


def routine_part(sample: Sample) -> str:
    m = re.search(r"<routines>\n(.*)\n</routines>", sample.system_prompt, re.DOTALL)
    return m.group(1) if m else ""


def test_resolve_configs() -> None:
    assert [c.name for c in resolve_configs("main")] == ["no_routine", "routine_branch", "routine_flat"]
    assert [c.name for c in resolve_configs("all")] == list(STEP_CONFIGS)
    assert "e2e" not in STEP_CONFIGS
    assert [c.name for c in resolve_configs("io, e2e,io")] == ["io", "e2e"]
    with pytest.raises(CallerError, match="unknown configuration 'nope'"):
        resolve_configs("nope")


async def test_configurations_change_only_the_routine_part(tset: TrajectorySet) -> None:
    base = samples(tset, "routine_branch")
    for name in STEP_CONFIGS:
        other = samples(tset, name)
        assert other.keys() == base.keys()
        for sid, s in other.items():
            assert s.expected == base[sid].expected and s.history == base[sid].history
            assert [t.name for t in s.tools] == [t.name for t in base[sid].tools]
            assert s.config == name


async def test_no_routine_flat_and_branch(tset: TrajectorySet) -> None:
    q1 = "q-t01/0"  # an HR user: the salary branch
    assert "<routines>" not in samples(tset, "no_routine")[q1].system_prompt
    assert "Follow the Routine" not in samples(tset, "no_routine")[q1].system_prompt
    branch = routine_part(samples(tset, "routine_branch")[q1])
    assert "Branch 3-1 Step 1." in branch and "get_salary_band" in branch
    flat = routine_part(samples(tset, "routine_flat")[q1])
    assert "Branch" not in flat and "use the get_salary tool" in flat and "get_salary_band" not in flat
    flat_staff = routine_part(samples(tset, "routine_flat")["q-t02/0"])  # staff: the band branch
    assert "use the get_salary_band tool" in flat_staff and "use the get_salary tool" not in flat_staff


async def test_component_ablations(tset: TrajectorySet) -> None:
    io = routine_part(samples(tset, "io")["q-t01/0"])
    assert "[input: employee name from the question] [output: employee id]" in io
    assert "[input:" not in routine_part(samples(tset, "routine_branch")["q-t01/0"])
    no_tools = routine_part(samples(tset, "no_tool_names")["q-t01/0"])
    assert "Step 2. Find employee: Search the employee by name;" in no_tools
    assert " tool" not in no_tools


async def test_draft_replaces_the_routine(tset: TrajectorySet) -> None:
    part = routine_part(samples(tset, "draft")["q-t04/1"])
    assert part == "list the team, count them, summarise"
    catalog = eval_toy.catalog()
    without = RoutineCatalog(catalog.routines, catalog.variants, {})
    with pytest.raises(CallerError, match="no user draft for Routine 'toy.salary'"):
        samples(tset, "draft", catalog=without)


async def test_candidates_hold_the_right_routine_among_k_in_seeded_order(tset: TrajectorySet) -> None:
    for k in (2, 3, 5):
        made = samples(tset, f"candidates_{k}")
        for s in made.values():
            headers = re.findall(r"^Routine: (.+?)(?: - |$)", routine_part(s), re.MULTILINE)
            assert len(headers) == k == len(set(headers))
            right = eval_toy.catalog().routine(s.routine_id).name
            assert right in headers
        # one set and order for all steps of a query
        parts = {s.query_id: routine_part(s) for s in made.values() if s.index == 0}
        assert all(routine_part(s) == parts[s.query_id] for s in made.values())
    first = {sid: routine_part(s) for sid, s in samples(tset, "candidates_3").items()}
    assert {sid: routine_part(s) for sid, s in samples(tset, "candidates_3").items()} == first
    assert {sid: routine_part(s) for sid, s in samples(tset, "candidates_3", seed=7).items()} != first
    positions = {routine_part(s).split("\n")[0] for s in samples(tset, "candidates_2").values()}
    assert len(positions) > 1  # the right Routine is not always first


async def test_more_candidates_than_routines_is_a_clear_error(tset: TrajectorySet) -> None:
    catalog = eval_toy.catalog()
    small = RoutineCatalog.build({k: v for k, v in catalog.routines.items() if k in ("toy.salary", "toy.team")})
    traj = next(t for t in tset.trajectories if t.routine_id == "toy.salary")
    with pytest.raises(CallerError, match="candidates_3 needs 3 Routines but the scenario has 2"):
        small.candidates(traj, 3, seed=0)


async def test_flat_variant_is_read_off_the_steps_without_a_variant(tset: TrajectorySet) -> None:
    from dataclasses import replace

    catalog = eval_toy.catalog()
    traj = next(t for t in tset.trajectories if t.query_id == "q-t02")
    assert catalog.flat(replace(traj, variant=None)).id == "toy.salary/3-2" == traj.variant
