"""Trajectories recorded through the scenario's server match gold; their per-step samples are exactly the
prompts the executor sends; tool order is seeded; the cache and the seeded subset behave."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evals.configs import CONFIGS, build_samples
from evals.decompose import Trajectory, cache_path, decompose, load_trajectories, select_queries
from routines.backends.scripted import ScriptedBackend
from routines.executor import Executor, ExecutorConfig
from routines.hub import ToolHub
from routines.scenario import Scenario
from tests.fixtures import eval_toy

pytestmark = pytest.mark.anyio


async def test_trajectories_reproduce_gold_with_observations_and_variables(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    gold = eval_toy.scenario().gold("test")
    assert tset.problems == []
    assert [t.query_id for t in tset.trajectories] == [g["id"] for g in gold]
    assert tset.steps == sum(len(g["calls"]) for g in gold) == 25
    team = next(t for t in tset.trajectories if t.query_id == "q-t04")
    # the long member list went to variable memory: the count step's argument is its key, and the prompt
    # before that step shows the key with a preview
    assert team.calls[1].arguments == {"members": "memory_members"}
    assert "memory_members" in team.calls[1].variables_before
    assert team.calls[0].variables_before == {}
    assert team.system == {"user_id": "u-staff"}
    note = next(t for t in tset.trajectories if t.query_id == "q-t06")
    assert note.calls[1].free_text == ("text",)


async def test_a_gold_call_the_server_does_not_reproduce_is_left_out_and_reported(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(eval_toy.SCENARIO_DIR, tmp_path / "scenario"))
    gold_file = copy / "data" / "gold_test.jsonl"
    rows = [json.loads(line) for line in gold_file.read_text().splitlines()]
    rows[1]["calls"][1]["arguments"] = {"name": "Grace Hopper"}
    gold_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tset = await load_trajectories(Scenario.load(copy), "test", tmp_path / "data", servers=eval_toy.servers())
    assert len(tset.trajectories) == len(rows) - 1
    assert "q-t02" not in {t.query_id for t in tset.trajectories}
    assert len(tset.problems) == 1 and "q-t02 call 1" in tset.problems[0] and "Grace Hopper" in tset.problems[0]


@pytest.mark.parametrize("config_name", ["routine_branch", "routine_flat", "no_routine", "io", "no_tool_names"])
async def test_samples_are_exactly_the_messages_the_executor_sends(tmp_path: Path, config_name: str) -> None:
    """A model-mode run whose scripted model makes the gold calls receives, at every step, the messages
    of the matching sample (tool list in the servers' order, as the executor lists it)."""
    tset = await eval_toy.trajectories(tmp_path)
    catalog = eval_toy.catalog()
    config = CONFIGS[config_name]
    samples = build_samples(config, tset.trajectories, tset.tools, catalog, shuffle="none")
    by_query: dict[str, list] = {}
    for s in samples:
        by_query.setdefault(s.query_id, []).append(s)
    async with ToolHub(eval_toy.servers()) as hub:
        for traj in tset.trajectories:
            backend = ScriptedBackend([{"name": c.name, "arguments": c.arguments} for c in traj.calls])
            executor = Executor(hub, backend, ExecutorConfig(mode="model", prompt=config.options))
            routine = catalog.flat(traj) if config.source == "flat" else catalog.routine(traj.routine_id)
            result = await executor.run(routine, traj.query, system=traj.system)
            assert result.ok and result.answer == traj.answer
            assert backend.requests == [s.messages() for s in by_query[traj.query_id]]


async def test_tool_order_is_seeded_per_routine_query_or_sample(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    names = sorted(t.name for t in tset.tools)

    def orders(shuffle: str, seed: int = 0) -> dict[str, list[str]]:
        samples = decompose(tset.trajectories, tset.tools, routines=None, seed=seed, shuffle=shuffle)  # type: ignore[arg-type]
        return {s.id: [t.name for t in s.tools] for s in samples}

    per_query = orders("per-query")
    assert all(sorted(o) == names for o in per_query.values())
    for traj in tset.trajectories:  # one order for all samples of a query
        assert len({tuple(per_query[f"{traj.query_id}/{i}"]) for i in range(len(traj.calls))}) == 1
    assert len({tuple(o) for o in per_query.values()}) > 1  # but not the same for every query
    assert orders("per-query") == per_query and orders("per-query", seed=1) != per_query
    per_routine = orders("per-routine")
    by_routine: dict[str, set[tuple[str, ...]]] = {}
    for traj in tset.trajectories:
        for i in range(len(traj.calls)):
            by_routine.setdefault(traj.routine_id, set()).add(tuple(per_routine[f"{traj.query_id}/{i}"]))
    assert all(len(o) == 1 for o in by_routine.values())  # one order for every sample of a Routine
    assert len(set().union(*by_routine.values())) == len(by_routine)  # a different one for each Routine
    assert orders("per-routine", seed=1) != per_routine
    per_sample = orders("per-sample")
    team = [tuple(per_sample[f"q-t04/{i}"]) for i in range(3)]
    assert len(set(team)) == 3
    assert all(o == [t.name for t in tset.tools] for o in orders("none").values())


async def test_samples_keep_history_expected_call_and_prompt_variables(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    samples = decompose(tset.trajectories, tset.tools, routines=None)
    team = [s for s in samples if s.query_id == "q-t04"]
    assert [s.index for s in team] == [0, 1, 2] and [s.step for s in team] == ["1", "2", "3"]
    assert [len(s.history) for s in team] == [0, 1, 2]
    assert team[1].expected.name == "count_members" and team[1].expected.arguments == {"members": "memory_members"}
    assert "memory_members: " not in team[0].system_prompt
    assert "memory_members: " in team[1].system_prompt
    assert team[2].history[0].observation == tset.trajectories[3].calls[0].observation


async def test_the_cache_is_used_until_the_gold_changes(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(eval_toy.SCENARIO_DIR, tmp_path / "scenario"))
    scenario = Scenario.load(copy)
    first = await load_trajectories(scenario, "test", tmp_path / "data", servers=eval_toy.servers())
    assert cache_path(tmp_path / "data", "evaltoy", "test").exists()
    dead = {"toy": {"command": "/nonexistent/server"}}  # a cache hit never starts a server
    again = await load_trajectories(scenario, "test", tmp_path / "data", servers=dead)
    assert [t.as_dict() for t in again.trajectories] == [t.as_dict() for t in first.trajectories]
    assert [t.name for t in again.tools] == [t.name for t in first.tools]
    gold_file = copy / "data" / "gold_test.jsonl"
    gold_file.write_text("\n".join(gold_file.read_text().splitlines()[:3]) + "\n")
    changed = await load_trajectories(scenario, "test", tmp_path / "data", servers=eval_toy.servers())
    assert len(changed.trajectories) == 3


def test_trajectory_round_trips_through_json() -> None:
    data = {
        "query_id": "q", "query": "hi", "routine_id": "r", "variant": None, "system": {"user_id": "u"},
        "inputs": {}, "answer": "a",
        "calls": [{"step": "1", "name": "t", "arguments": {"x": 1}, "observation": "{}", "variables_before": {},
                   "free_text": ["x"]}],
    }
    assert Trajectory.from_dict(json.loads(json.dumps(Trajectory.from_dict(data).as_dict()))).as_dict() == data


async def test_subset_takes_whole_queries_up_to_at_least_the_steps_asked(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    subset = select_queries(tset.trajectories, 10, seed=3)
    steps = sum(len(t.calls) for t in subset)
    assert 10 <= steps < 10 + max(len(t.calls) for t in tset.trajectories)
    assert [t.query_id for t in subset] == [t.query_id for t in tset.trajectories if t in subset]  # original order
    assert select_queries(tset.trajectories, 10, seed=3) == subset
    assert select_queries(tset.trajectories, None, seed=3) == tset.trajectories
    assert select_queries(tset.trajectories, 1000, seed=3) == tset.trajectories
