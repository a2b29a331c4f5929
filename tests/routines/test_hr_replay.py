"""Every HR query (train and test) through the real HR server reproduces its gold trajectory: in ``bound``
mode with no model, and in ``model`` mode with ``ScriptedBackend`` replaying the gold calls as a model
would write them (long values as the ``memory_*`` keys the executor shows).

Measured here (2 shared CPU cores): bound mode runs all 737 queries in 13 s, the scripted replay in 16 s
(31 s and 70 s when the machine is loaded); nearly all of it is the HR server's own SQLite work and the
in-memory MCP round trip (the executor's share is about 0.1 ms a step, see docs/engine.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memory.variables import VariableMemory, calls_as_written
from routines.backends.scripted import ScriptedBackend
from routines.executor import Executor, ExecutorConfig, RunResult
from routines.hub import ToolHub
from routines.model import Routine
from scenarios.hr import build_database, create_server, load_gold, load_routines

pytestmark = pytest.mark.anyio

SPLITS = ("train", "test")
CONFIG = ExecutorConfig()


@pytest.fixture(scope="session")
def hr_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_database(tmp_path_factory.mktemp("hr") / "hr.sqlite")


@pytest.fixture(scope="session")
def routines() -> dict[str, Routine]:
    return {r.id or "": r for r in load_routines()}


@pytest.fixture
async def hub(hr_db: Path) -> AsyncIterator[ToolHub]:
    async with ToolHub({"hr": create_server(hr_db)}) as hub:
        yield hub



def mismatch(gold: dict[str, Any], result: RunResult) -> str | None:
    """What differs between a run and its gold trajectory (None when nothing does)."""
    if not result.ok:
        return f"{gold['id']}: failed: {result.error}"
    refused = [a.error for a in result.attempts if a.error]
    if refused:
        return f"{gold['id']}: refused calls: {refused[:2]}"
    got = [(c.step, c.tool, c.resolved_arguments) for c in result.calls]
    want = [(c["step"], c["name"], c["arguments"]) for c in gold["calls"]]
    if got != want:
        first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        return f"{gold['id']}: call {first + 1} differs: got {got[first:first + 1]}, want {want[first:first + 1]}"
    results = [c.step for c, w in zip(result.calls, gold["calls"]) if c.result != w["result"]]
    if results:
        return f"{gold['id']}: results of steps {results} differ"
    if result.answer != gold["answer"]:
        return f"{gold['id']}: answer {result.answer!r} != {gold['answer']!r}"
    return None


def _report(problems: list[str], total: int) -> str:
    return f"{len(problems)} of {total} queries differ from gold; first: " + "; ".join(problems[:5])


@pytest.mark.parametrize("split", SPLITS)
async def test_bound_mode_reproduces_every_gold_trajectory_without_a_model(
    split: str, hub: ToolHub, routines: dict[str, Routine]
) -> None:
    gold = load_gold(split)
    executor = Executor(hub, None, CONFIG, variables=VariableMemory)
    problems = []
    for record in gold:
        result = await executor.run(routines[record["routine_id"]], record["query"], inputs=record["inputs"],
                                    user_id=record["user_id"], mode="bound")
        if problem := mismatch(record, result):
            problems.append(problem)
    assert not problems, _report(problems, len(gold))
    assert len(gold) == {"train": 537, "test": 200}[split]


@pytest.mark.parametrize("split", SPLITS)
async def test_a_scripted_model_replaying_the_gold_calls_reproduces_every_trajectory(
    split: str, hub: ToolHub, routines: dict[str, Routine]
) -> None:
    gold = load_gold(split)
    backend = ScriptedBackend()
    executor = Executor(hub, backend, CONFIG, variables=VariableMemory)
    problems = []
    keys_used = 0
    for record in gold:
        calls = calls_as_written(record["calls"], CONFIG.memory_threshold)
        keys_used += sum("memory_" in str(c["arguments"]) for c in calls)
        backend.replies = list(calls)
        result = await executor.run(routines[record["routine_id"]], record["query"], inputs=record["inputs"],
                                    user_id=record["user_id"], mode="model")
        if problem := mismatch(record, result):
            problems.append(problem)
        elif [c.arguments for c in result.calls] != [c["arguments"] for c in calls]:
            problems.append(f"{record['id']}: the executor shows other memory keys than the replay used")
    assert not problems, _report(problems, len(gold))
    assert keys_used > 0  # long values really went through variable memory


async def test_hybrid_mode_runs_the_hr_routines_without_the_model_when_the_inputs_are_given(
    hub: ToolHub, routines: dict[str, Routine]
) -> None:
    one_per_variant = {g["variant"]: g for g in load_gold("test")}
    backend = ScriptedBackend()  # no replies: any model request would fail the run
    executor = Executor(hub, backend, CONFIG, variables=VariableMemory)
    for record in one_per_variant.values():
        result = await executor.run(routines[record["routine_id"]], record["query"], inputs=record["inputs"],
                                    user_id=record["user_id"], mode="hybrid")
        assert mismatch(record, result) is None
    assert backend.requests == [] and len(one_per_variant) == 10


@pytest.mark.model
async def test_the_embedded_model_fills_the_one_step_the_routine_leaves_open(
    hub: ToolHub, routines: dict[str, Routine]
) -> None:
    """Hybrid mode with the real SmolLM2-135M (greedy, constrained to the step's tool): every HR step is
    bound, so a copy of the salary Routine leaves step 4-1_2's arguments open and the model must copy the
    employee id from an earlier observation."""
    from routines.backends import create_backend

    record = next(g for g in load_gold("test") if g["variant"] == "hr.salary/4-1")
    data = routines["hr.salary"].model_dump(exclude_none=True)
    (open_step,) = [s for s in data["steps"] if s["step"] == "4-1_2"]
    del open_step["args"]
    backend = create_backend("local")
    executor = Executor(hub, backend, ExecutorConfig(constrain="next", tools_in_prompt="routine"), variables=VariableMemory)
    result = await executor.run(Routine.from_data(data), record["query"], inputs=record["inputs"],
                                user_id=record["user_id"], mode="hybrid")
    assert mismatch(record, result) is None
    assert [c.step for c in result.calls if c.source == "model"] == ["4-1_2"]
    assert [a.source for a in result.attempts].count("model") == 1  # right the first time, no retry
