"""Running samples through backends (batched, concurrent, constrained) and whole queries end to end."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from evals.configs import CONFIGS, build_samples
from evals.decompose import Sample, TrajectorySet
from evals.runner import (
    RunOptions,
    batches_for_real,
    e2e_samples,
    run_end_to_end,
    run_samples,
    scripted_backend,
)
from routines.backends.base import BaseBackend, Completion, Constraint, Message
from routines.backends.scripted import ScriptedBackend, call_text
from routines.hub import ToolHub
from tests.fixtures import eval_toy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tset(tmp_path: Path) -> TrajectorySet:
    return await eval_toy.trajectories(tmp_path)


def branch_samples(tset: TrajectorySet) -> list[Sample]:
    return build_samples(CONFIGS["routine_branch"], tset.trajectories, tset.tools, eval_toy.catalog())


class BatchingBackend(BaseBackend):
    """A fake at the model boundary that batches: answers every conversation with the expected call and
    records the batches and constraints it got."""

    name = "fake-batching"

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.answers = {tuple(s.messages()): s.expected.text() for s in samples}
        self.batches: list[int] = []
        self.constraints: list[Constraint | None] = []

    async def complete_batch(
        self, conversations: Sequence[Sequence[Message]], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> list[Completion]:
        self.batches.append(len(conversations))
        self.constraints.append(constraint)
        return [Completion(self.answers[tuple(c)], meta={"reused_prompt_tokens": 5}) for c in conversations]


async def test_outputs_are_judged_per_sample_in_order(tset: TrajectorySet) -> None:
    samples = branch_samples(tset)
    outputs = {s.id: s.expected.text() for s in samples}
    outputs["q-t01/0"] = "I would look up the user first."
    outputs["q-t01/1"] = '<tool_call>{"name": "search_employee", "arguments": {"name": "Ada"</tool_call>'
    outputs["q-t01/2"] = call_text("get_salary_band", {"employee_id": "E-001"})
    outputs["q-t01/3"] = call_text("summarize", {"topic": "anything", "data": {"salary": 1}})
    outputs["q-t02/0"] = call_text("get_user_profile", {"user_id": "u-staff", "verbose": True})
    results = await run_samples(samples, scripted_backend(samples, outputs), RunOptions(progress=False))
    assert [r.sample.id for r in results] == [s.id for s in samples]
    category = {r.sample.id: r.verdict.category for r in results}
    assert category["q-t01/0"] == "tool.prose"
    assert category["q-t01/1"] == "structural"
    assert category["q-t01/2"] == "tool.wrong"
    assert category["q-t01/3"] == "param.value"  # topic is free text, data is not
    assert category["q-t02/0"] == "param.hallucinated"
    assert sum(r.verdict.overall for r in results) == len(samples) - 5


async def test_free_text_parameters_are_checked_for_presence_and_type_only(tset: TrajectorySet) -> None:
    samples = [s for s in branch_samples(tset) if s.id == "q-t06/1"]
    assert samples[0].free_text == ("text",)
    ok = {"q-t06/1": call_text("send_note", {"text": "A note on Ada Lovelace, who starts Monday"})}
    (result,) = await run_samples(samples, scripted_backend(samples, ok), RunOptions(progress=False))
    assert result.verdict.overall
    wrong_type = {"q-t06/1": call_text("send_note", {"text": 42})}
    (result,) = await run_samples(samples, scripted_backend(samples, wrong_type), RunOptions(progress=False))
    assert result.verdict.category == "param.type"


async def test_batching_backend_gets_chunks_with_a_constraint_of_every_listed_tool(tset: TrajectorySet) -> None:
    samples = branch_samples(tset)
    backend = BatchingBackend(samples)
    assert batches_for_real(backend) and not batches_for_real(ScriptedBackend())
    results = await run_samples(samples, backend, RunOptions(constrain=True, chunk=10, progress=False))
    assert all(r.verdict.overall for r in results)
    assert backend.batches == [10, 10, 5]
    all_tools = sorted(t.name for t in tset.tools)
    for constraint in backend.constraints:
        assert constraint is not None and [t.name for t in constraint.tools] == all_tools
    assert results[0].meta == {"reused_prompt_tokens": 5}


async def test_unconstrained_runs_send_no_constraint(tset: TrajectorySet) -> None:
    samples = branch_samples(tset)[:4]
    backend = scripted_backend(samples)
    await run_samples(samples, backend, RunOptions(progress=False))
    assert backend.constraints == [None] * 4
    backend = scripted_backend(samples)
    await run_samples(samples, backend, RunOptions(constrain=True, progress=False))
    assert all(c is not None and len(c.tools) == len(tset.tools) for c in backend.constraints)


async def test_http_backends_get_concurrent_requests_up_to_the_limit(tset: TrajectorySet) -> None:
    samples = branch_samples(tset)
    answers = {tuple(s.messages()): s.expected.text() for s in samples}
    state = {"now": 0, "most": 0}

    class SlowHttp(BaseBackend):
        name = "slow-http"

        async def complete(self, messages: Sequence[Message], *, constraint: Constraint | None = None,
                           max_tokens: int = 512) -> Completion:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            await anyio.sleep(0.01)
            state["now"] -= 1
            return Completion(answers[tuple(messages)])

    results = await run_samples(samples, SlowHttp(), RunOptions(concurrency=3, progress=False))
    assert all(r.verdict.overall for r in results)
    assert state["most"] == 3


async def test_end_to_end_scores_task_success(tset: TrajectorySet) -> None:
    catalog = eval_toy.catalog()
    async with ToolHub(eval_toy.servers()) as hub:
        oracle = scripted_backend(e2e_samples(tset.trajectories, catalog, tset.tools))
        results = await run_end_to_end(tset.trajectories, catalog, hub, oracle, progress=False)
        assert len(results) == len(tset.trajectories) and all(r.success for r in results)

        salary = [t for t in tset.trajectories if t.query_id == "q-t01"]
        steps = e2e_samples(salary, catalog, tset.tools)
        wrong = {s.id: s.expected.text() for s in steps}
        wrong["q-t01/2"] = call_text("get_salary_band", {"employee_id": "E-001"})  # the other branch: allowed
        (result,) = await run_end_to_end(salary, catalog, hub, scripted_backend(steps, wrong), progress=False)
        assert result.finished and not result.calls_ok and not result.success
        assert [c["name"] for c in result.calls][2] == "get_salary_band"

        prose = {s.id: "no idea" for s in steps}
        (result,) = await run_end_to_end(salary, catalog, hub, scripted_backend(steps, prose, repeat=3),
                                         progress=False)
        assert not result.finished and result.error and result.model_requests == 3


@pytest.mark.model
async def test_embedded_model_constrained_to_the_listed_tools_makes_a_listed_call_unless_cut_off(
    tset: TrajectorySet,
) -> None:
    from routines.backends.transformers import TransformersBackend

    samples = [s for s in branch_samples(tset) if s.query_id in ("q-t01", "q-t04")]
    options = RunOptions(constrain=True, max_tokens=160, progress=False)
    results = await run_samples(samples, TransformersBackend(threads=1), options)
    assert len(results) == 7
    finished = [r for r in results if r.meta["finish_reason"] == "stop"]
    assert finished  # most calls are short
    for r in finished:
        assert r.verdict.structural and r.verdict.category not in ("tool.prose", "tool.count", "tool.invented")
        assert r.verdict.call is not None and r.verdict.call.name in {t.name for t in r.sample.tools}
    for r in results:  # the only unparsable outputs are the ones cut off at max_tokens
        assert r.verdict.structural or r.meta["finish_reason"] == "length"
