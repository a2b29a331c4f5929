"""Trajectories recorded through the scenario's server match gold; their per-step samples are exactly the
prompts the executor sends; tool order is seeded; the cache and the seeded subset behave."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evals.configs import CONFIGS, build_samples
from evals.decompose import Trajectory, cache_path, decompose, load_trajectories, select_queries
from memory.variables import VariableMemory
from routines.backends.scripted import ScriptedBackend
from routines.errors import CallerError
from routines.executor import Executor, ExecutorConfig
from routines.hub import ToolHub
from routines.scenario import Scenario
from tests.fixtures import eval_toy

pytestmark = pytest.mark.anyio


async def test_trajectories_reproduce_gold_with_observations_keys_and_next_tools(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    gold = eval_toy.scenario().gold("test")
    assert tset.problems == []
    assert [t.query_id for t in tset.trajectories] == [g["id"] for g in gold]
    assert tset.steps == sum(len(g["calls"]) for g in gold) == 25
    team = next(t for t in tset.trajectories if t.query_id == "q-t04")
    # the long member list went to variable memory: the observation that stored it shows its key with a preview,
    # the count step's argument is that key, and the finish step passes the count's whole result by its key
    assert team.calls[0].observation.startswith(
        'memory_list_team = {"team": "research", "members": "memory_members"}\nmemory_members = ["Research Member 01"')
    assert "Research Member 40" not in team.calls[0].observation
    assert team.calls[1].arguments == {"members": "memory_members"}
    assert team.calls[2].arguments == {"topic": "team size", "data": "memory_count_members"}
    assert team.system == {"user_id": "u-staff"}
    # the tools the Routine allowed at each step: every branch's first tool at the branch point
    salary = tset.trajectories[0]
    assert [c.next_tools for c in salary.calls] == [
        ("get_user_profile",), ("search_employee",), ("get_salary", "get_salary_band"), ("summarize",)]
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
    assert len(tset.problems) == 1 and "q-t02: call 2" in tset.problems[0] and "Grace Hopper" in tset.problems[0]


@pytest.mark.parametrize("tools_in_prompt", ["routine", "all"])
@pytest.mark.parametrize("config_name", ["routine_branch", "routine_flat", "no_routine", "io", "no_tool_names"])
async def test_samples_are_exactly_the_messages_the_executor_sends(
    tmp_path: Path, config_name: str, tools_in_prompt: str
) -> None:
    """A model-mode run whose scripted model makes the gold calls receives, at every step, the messages
    of the matching sample (tool list in the servers' order, as the executor lists it), under both protocols."""
    tset = await eval_toy.trajectories(tmp_path)
    catalog = eval_toy.catalog()
    config = CONFIGS[config_name]
    samples = build_samples(config, tset.trajectories, tset.tools, catalog, shuffle="none", tools_in_prompt=tools_in_prompt)
    # Without a Routine in the prompt both protocols list every tool (the executor, which always holds a
    # Routine, lists every tool with "all").
    executor_tools = "all" if config.source == "none" else tools_in_prompt
    by_query: dict[str, list] = {}
    for s in samples:
        by_query.setdefault(s.query_id, []).append(s)
    async with ToolHub(eval_toy.servers()) as hub:
        for traj in tset.trajectories:
            backend = ScriptedBackend([c.call.as_dict() for c in traj.calls])
            executor = Executor(hub, backend, ExecutorConfig(mode="model", prompt=config.options,
                                                             tools_in_prompt=executor_tools), variables=VariableMemory)  # type: ignore[arg-type]
            routine = catalog.flat(traj) if config.source == "flat" else catalog.routine(traj.routine_id)
            result = await executor.run(routine, traj.query, inputs=traj.inputs, system=traj.system)
            assert result.ok and result.answer == traj.answer
            assert backend.requests == [s.messages() for s in by_query[traj.query_id]]
            listed = {t.name for s in by_query[traj.query_id] for t in s.tools}
            assert listed == ({t.name for t in tset.tools} if executor_tools == "all" else set(routine.tools()))


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


async def test_samples_keep_history_expected_call_and_one_system_prompt_per_query(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    samples = decompose(tset.trajectories, tset.tools, routines=None)
    team = [s for s in samples if s.query_id == "q-t04"]
    assert [s.index for s in team] == [0, 1, 2] and [s.step for s in team] == ["1", "2", "3"]
    assert [len(s.history) for s in team] == [0, 1, 2]
    assert team[1].expected.name == "count_members" and team[1].expected.arguments == {"members": "memory_members"}
    # append-only: the system prompt is the same at every step; the key appears in the history's observation
    assert team[0].system_prompt == team[1].system_prompt == team[2].system_prompt
    assert "memory_members = " not in team[0].system_prompt and "Research Member" not in team[0].system_prompt
    assert "memory_members = " in team[1].history[0].observation
    assert team[2].history[0].observation == tset.trajectories[3].calls[0].observation
    assert team[1].messages()[: len(team[0].messages())] == team[0].messages()
    assert all(s.next_tools == () for s in samples)  # no Routine shown: nothing to constrain to next


async def test_product_samples_list_the_shown_routines_tools_in_the_papers_order(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    catalog = eval_toy.catalog()
    paper = {s.id: s for s in build_samples(CONFIGS["routine_branch"], tset.trajectories, tset.tools, catalog)}
    for s in build_samples(CONFIGS["routine_branch"], tset.trajectories, tset.tools, catalog, tools_in_prompt="routine"):
        names = [t.name for t in s.tools]
        assert set(names) == set(catalog.routine(s.routine_id).tools())
        assert names == [t.name for t in paper[s.id].tools if t.name in names]  # the same seeded order, filtered
        assert s.expected == paper[s.id].expected and s.history == paper[s.id].history
    # several candidate Routines: the union of their tools
    for s in build_samples(CONFIGS["candidates_2"], tset.trajectories, tset.tools, catalog, tools_in_prompt="routine"):
        shown = catalog.candidates(next(t for t in tset.trajectories if t.query_id == s.query_id), 2, 0)
        assert {t.name for t in s.tools} == {name for r in shown for name in r.tools()}
    with pytest.raises(CallerError, match="unknown tools_in_prompt 'some'"):
        build_samples(CONFIGS["routine_branch"], tset.trajectories, tset.tools, catalog, tools_in_prompt="some")


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
        "calls": [{"step": "1", "name": "t", "arguments": {"x": 1}, "resolved_arguments": None, "result": None,
                   "observation": "memory_t = {}", "source": "bound", "next_tools": ["t", "u"], "free_text": ["x"]}],
    }
    assert Trajectory.from_dict(json.loads(json.dumps(Trajectory.from_dict(data).as_dict()))).as_dict() == data


def test_a_cache_line_written_before_the_run_record_reads_the_same() -> None:
    """Evaluation caches written by TrajectoryCall (no source, results or resolved arguments) still load."""
    old = {"query_id": "q", "query": "hi", "routine_id": "r", "variant": "r/3-1", "system": {"user_id": "u"},
           "inputs": {"a": 1}, "answer": "a",
           "calls": [{"step": "1", "name": "t", "arguments": {"x": "memory_t"}, "observation": "memory_t = {}",
                      "free_text": [], "next_tools": []}]}
    traj = Trajectory.from_dict(old)
    (call,) = traj.calls
    assert (call.step, call.tool, call.arguments, call.observation, call.source) == ("1", "t", {"x": "memory_t"},
                                                                                   "memory_t = {}", "bound")
    assert (traj.query_id, traj.variant, traj.system, traj.inputs, traj.answer) == ("q", "r/3-1", {"user_id": "u"},
                                                                                   {"a": 1}, "a")


async def test_subset_takes_whole_queries_up_to_at_least_the_steps_asked(tmp_path: Path) -> None:
    tset = await eval_toy.trajectories(tmp_path)
    subset = select_queries(tset.trajectories, 10, seed=3)
    steps = sum(len(t.calls) for t in subset)
    assert 10 <= steps < 10 + max(len(t.calls) for t in tset.trajectories)
    assert [t.query_id for t in subset] == [t.query_id for t in tset.trajectories if t in subset]  # original order
    assert select_queries(tset.trajectories, 10, seed=3) == subset
    assert select_queries(tset.trajectories, None, seed=3) == tset.trajectories
    assert select_queries(tset.trajectories, 1000, seed=3) == tset.trajectories
