"""Running samples through backends (batched, concurrent, constrained) and whole queries end to end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from evals.configs import CONFIGS, build_samples
from evals.decompose import Sample, TrajectorySet
from evals.end_to_end import e2e_samples, run_end_to_end
from evals.runner import (
    RunOptions,
    SampleResult,
    batches_for_real,
    conversation_key,
    pick_routine,
    run_samples,
    scripted_backend,
)
from routines.backends import create_backend
from routines.backends.base import BaseBackend, Completion, Constraint, Message
from routines.backends.process import ProcessBackend, close_all
from routines.backends.scripted import ScriptedBackend, call_text
from routines.hub import ToolHub
from routines.trajectory import Trajectory
from tests.fixtures import eval_toy
from tests.fixtures.worker_backends import echo_backend

pytestmark = pytest.mark.anyio


@pytest.fixture
async def tset(tmp_path: Path) -> TrajectorySet:
    return await eval_toy.trajectories(tmp_path)


def branch_samples(tset: TrajectorySet, tools_in_prompt: str = "all") -> list[Sample]:
    """Per-step samples of the branching Routine, every tool listed unless told (the paper's protocol)."""
    return build_samples(CONFIGS["routine_branch"], tset.trajectories, tset.tools, eval_toy.catalog(),
                         tools_in_prompt=tools_in_prompt)


class ReadsInputs(BaseBackend):
    """The oracle of an end-to-end run: answers the input extraction (a JSON-schema constraint) with the
    trajectory's inputs, every other conversation from ``calls`` (whose ``requests`` are then the calls' only)."""

    name = "reads-inputs"

    def __init__(self, calls: ScriptedBackend, trajectories: Sequence[Trajectory]) -> None:
        self.calls = calls
        self.inputs = {t.query: t.inputs for t in trajectories}
        self.extractions = 0

    async def complete(self, messages: Sequence[Message], *, constraint: Constraint | None = None,
                       max_tokens: int = 512) -> Completion:
        if constraint is not None and constraint.json_schema is not None:
            self.extractions += 1
            names = constraint.json_schema["required"]
            inputs = self.inputs[messages[-1].content]
            return Completion(text=json.dumps({n: inputs[n] for n in names}), backend=self.name)
        return await self.calls.complete(messages, constraint=constraint, max_tokens=max_tokens)


class BatchingBackend(BaseBackend):
    """A fake at the model boundary that batches: answers every conversation with the expected call and
    records the batches and constraints it got."""

    name = "fake-batching"

    def __init__(self, samples: Sequence[Sample], *, seconds_per_sample: float = 0.0) -> None:
        self.answers = {tuple(s.messages()): s.expected.text() for s in samples}
        self.routine = {tuple(s.messages()): s.routine_id for s in samples}
        self.seconds_per_sample = seconds_per_sample
        self.batches: list[int] = []
        self.routines: list[set[str]] = []
        self.constraints: list[Constraint | None] = []

    async def complete_batch(
        self, conversations: Sequence[Sequence[Message]], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> list[Completion]:
        self.batches.append(len(conversations))
        self.routines.append({self.routine[tuple(c)] for c in conversations})
        self.constraints.append(constraint)
        await anyio.sleep(self.seconds_per_sample * len(conversations))
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
    results = await run_samples(samples, backend, RunOptions(constrain="routine", chunk=10, progress=False))
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
    await run_samples(samples, backend, RunOptions(constrain="routine", progress=False))
    assert all(c is not None and len(c.tools) == len(tset.tools) for c in backend.constraints)
    # booleans (the older setting) still read as a mode; False never constrains
    assert (RunOptions(constrain=True).constrain, RunOptions(constrain=False).constrain) == ("routine", "none")  # type: ignore[arg-type]
    backend = scripted_backend(samples)
    await run_samples(samples, backend, RunOptions(constrain=False, progress=False))  # type: ignore[arg-type]
    assert backend.constraints == [None] * 4


def product_samples(tset: TrajectorySet) -> list[Sample]:
    return build_samples(CONFIGS["routine_branch"], tset.trajectories, tset.tools, eval_toy.catalog(),
                         tools_in_prompt="routine")


async def test_the_next_constraint_admits_the_routines_next_step_and_every_branch_at_a_branch_point(
    tset: TrajectorySet,
) -> None:
    samples = [s for s in product_samples(tset) if s.query_id in ("q-t01", "q-t02", "q-t04")]
    backend = BatchingBackend(samples)
    results = await run_samples(samples, backend, RunOptions(constrain="next", chunk=16, progress=False))
    assert all(r.verdict.overall for r in results)
    by_id = {r.sample.id: r.sample for r in results}
    assert by_id["q-t01/2"].next_tools == by_id["q-t02/2"].next_tools == ("get_salary", "get_salary_band")
    assert [t.name for t in by_id["q-t01/2"].allowed("next")] == ["get_salary", "get_salary_band"]
    assert [t.name for t in by_id["q-t04/1"].allowed("next")] == ["count_members"]
    # one chunk per set of admitted tools: the branch step never shares a grammar with another step
    admitted = [tuple(t.name for t in c.tools) for c in backend.constraints if c is not None]
    assert len(admitted) == len(backend.constraints) == len(backend.batches)
    assert ("get_salary", "get_salary_band") in admitted and ("count_members",) in admitted
    assert all(len(a) == 1 or a == ("get_salary", "get_salary_band") for a in admitted)
    # "routine" admits every tool the product prompt lists: the query's Routine's tools
    backend = BatchingBackend(samples)
    await run_samples(samples, backend, RunOptions(constrain="routine", chunk=16, progress=False))
    assert {tuple(t.name for t in c.tools) for c in backend.constraints if c is not None} == {
        ("get_salary", "get_salary_band", "get_user_profile", "search_employee", "summarize"),
        ("count_members", "list_team", "summarize")}


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


def runs(items: list[str]) -> list[str]:
    """``items`` with repeats collapsed: ``a a b a`` -> ``a b a``."""
    return [x for n, x in enumerate(items) if n == 0 or items[n - 1] != x]


async def test_lanes_give_the_same_results_in_the_same_order_as_one_backend(tset: TrajectorySet) -> None:
    samples = branch_samples(tset)[::-1]  # any order in, the same order out
    options = RunOptions(constrain="routine", chunk=4, progress=False)
    alone = await run_samples(samples, BatchingBackend(samples), options)
    lanes = [BatchingBackend(samples, seconds_per_sample=0.002) for _ in range(2)]
    seen: list[SampleResult] = []
    together = await run_samples(samples, lanes, options, on_result=seen.append)
    assert [r.as_dict() for r in together] == [r.as_dict() for r in alone]
    assert [r.sample.id for r in together] == [s.id for s in samples]
    assert sorted(r.sample.id for r in seen) == sorted(s.id for s in samples)
    # both lanes worked; every chunk holds one Routine; a lane leaves a Routine only when it is done
    assert all(lane.batches for lane in lanes) and sum(sum(lane.batches) for lane in lanes) == len(samples)
    assert all(len(routines) == 1 for lane in lanes for routines in lane.routines)
    order = [[next(iter(r)) for r in lane.routines] for lane in lanes]
    assert [o[0] for o in order] == ["toy.salary", "toy.team"]  # the two largest Routines first
    for lane_order in order:
        assert len(runs(lane_order)) == len(set(lane_order))


async def test_lanes_share_a_single_routine_near_the_end(tset: TrajectorySet) -> None:
    samples = [s for s in branch_samples(tset) if s.routine_id == "toy.salary"]  # 12 samples, one chunk of 16
    lanes = [BatchingBackend(samples, seconds_per_sample=0.002) for _ in range(2)]
    results = await run_samples(samples, lanes, RunOptions(chunk=16, progress=False))
    assert all(r.verdict.overall for r in results)
    assert [lane.batches for lane in lanes] == [[6], [6]]


def test_a_lane_sticks_to_its_routine_then_takes_the_largest_one_nobody_works_on() -> None:
    left = {"a": 5, "b": 9, "c": 12, "d": 0}
    assert pick_routine(left, "a", ["c"]) == "a"  # its prefix is cached
    assert pick_routine(left, None, [None]) == "c"  # the largest first
    assert pick_routine(left, None, ["c"]) == "b"  # the largest nobody works on
    assert pick_routine(left, "d", ["c", "b"]) == "a"  # "d" is done
    assert pick_routine({"a": 0, "b": 3, "c": 7}, "a", ["b", "c"]) == "c"  # all taken: help the largest
    assert pick_routine({"a": 4, "b": 4}, None, []) == "a"  # ties: the first
    assert pick_routine({"a": 0, "b": 0}, "a", ["b"]) is None


def oracle_answers(samples: Sequence[Sample]) -> dict[str, str]:
    return {conversation_key(s.messages()): s.expected.text() for s in samples}


class CountingWorker(ProcessBackend):
    """A worker that counts the chunks it was sent (in the parent)."""

    chunks = 0

    async def complete_batch(self, conversations: Sequence[Sequence[Message]], **kwargs: object) -> list[Completion]:
        self.chunks += 1
        return await super().complete_batch(conversations, **kwargs)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
async def test_worker_processes_as_lanes_give_the_same_results_as_one_backend(tset: TrajectorySet) -> None:
    samples = branch_samples(tset)
    options = RunOptions(constrain="routine", chunk=3, progress=False)
    alone = await run_samples(samples, BatchingBackend(samples), options)
    workers = [CountingWorker(echo_backend, answers=oracle_answers(samples)) for _ in range(2)]
    try:
        together = await run_samples(samples, workers, options)  # started by run_samples
        assert all(batches_for_real(w) for w in workers) and all(w.chunks for w in workers)
    finally:
        await close_all(workers)
    assert [(r.sample.id, r.output, r.verdict) for r in together] == [(r.sample.id, r.output, r.verdict) for r in alone]


@pytest.mark.timeout(60)
async def test_workers_that_do_not_batch_get_one_sample_per_request(tset: TrajectorySet) -> None:
    samples = branch_samples(tset)
    workers = [ProcessBackend(echo_backend, batching=False, answers=oracle_answers(samples)) for _ in range(2)]
    try:
        results = await run_samples(samples, workers, RunOptions(progress=False))
        assert not any(batches_for_real(w) for w in workers)
    finally:
        await close_all(workers)
    assert [r.sample.id for r in results] == [s.id for s in samples] and all(r.verdict.overall for r in results)
    with pytest.raises(RuntimeError, match="start the ProcessBackend first"):
        batches_for_real(ProcessBackend(echo_backend))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("batching", [True, False])
async def test_a_prompt_too_long_for_the_model_is_scored_wrong_and_the_run_goes_on(
    tset: TrajectorySet, batching: bool
) -> None:
    """Through a worker process, as ``routine eval --workers`` runs: the samples whose conversation does not
    fit are category ``context`` (nothing generated), the others are answered as before."""
    samples = branch_samples(tset)
    sizes = sorted(sum(len(m.content) for m in s.messages()) for s in samples)
    context = sizes[len(sizes) // 2]
    worker = ProcessBackend(echo_backend, batching=batching, answers=oracle_answers(samples), context=context)
    try:
        results = await run_samples(samples, worker, RunOptions(constrain="routine", chunk=4, progress=False))
    finally:
        await close_all([worker])
    assert [r.sample.id for r in results] == [s.id for s in samples]
    for r in results:
        fits = sum(len(m.content) for m in r.sample.messages()) <= context
        assert r.verdict.overall == fits
        if not fits:
            assert (r.verdict.category, r.output, r.meta) == ("context", "", {"finish_reason": "context"})
            assert "longer than" in r.verdict.detail
    assert 0 < sum(r.verdict.category == "context" for r in results) < len(results)


@pytest.mark.parametrize("tools_in_prompt", ["routine", "all"])
async def test_an_end_to_end_run_sends_exactly_the_per_step_samples(tset: TrajectorySet, tools_in_prompt: str) -> None:
    catalog = eval_toy.catalog()
    async with ToolHub(eval_toy.servers()) as hub:
        samples = e2e_samples(tset.trajectories, catalog, tset.tools, tools_in_prompt=tools_in_prompt)  # type: ignore[arg-type]
        oracle = scripted_backend(samples)
        model = ReadsInputs(oracle, tset.trajectories)
        results = await run_end_to_end(tset.trajectories, catalog, hub, model, tools_in_prompt=tools_in_prompt,  # type: ignore[arg-type]
                                       progress=False)
    assert model.extractions == sum(1 for t in tset.trajectories if t.inputs)
    assert len(results) == len(tset.trajectories) and all(r.success for r in results)
    assert sorted(map(conversation_key, oracle.requests)) == sorted(conversation_key(s.messages()) for s in samples)
    listed = {len(s.tools) for s in samples}
    assert listed == ({len(tset.tools)} if tools_in_prompt == "all" else {2, 3, 5})  # the Routines' tools only


async def test_end_to_end_scores_task_success(tset: TrajectorySet) -> None:
    catalog = eval_toy.catalog()
    async with ToolHub(eval_toy.servers()) as hub:
        oracle = ReadsInputs(scripted_backend(e2e_samples(tset.trajectories, catalog, tset.tools)), tset.trajectories)
        results = await run_end_to_end(tset.trajectories, catalog, hub, oracle, progress=False)
        assert len(results) == len(tset.trajectories) and all(r.success for r in results)

        salary = [t for t in tset.trajectories if t.query_id == "q-t01"]
        steps = e2e_samples(salary, catalog, tset.tools)
        wrong = {s.id: s.expected.text() for s in steps}
        wrong["q-t01/2"] = call_text("get_salary_band", {"employee_id": "E-001"})  # the branch whose guard is false
        (result,) = await run_end_to_end(salary, catalog, hub, ReadsInputs(scripted_backend(steps, wrong, repeat=2), salary),
                                         progress=False)
        assert not result.finished and not result.calls_ok and not result.success
        assert [c["name"] for c in result.calls] == ["get_user_profile", "search_employee"]  # refused: never called
        assert "condition does not hold" in (result.error or "") and result.model_requests == 2 + 3

        prose = {s.id: "no idea" for s in steps}
        (result,) = await run_end_to_end(salary, catalog, hub, ReadsInputs(scripted_backend(steps, prose, repeat=3), salary),
                                         progress=False)
        assert not result.finished and result.error and result.model_requests == 3


@pytest.mark.model
async def test_embedded_model_constrained_to_the_listed_tools_makes_a_listed_call_unless_cut_off(
    tset: TrajectorySet,
) -> None:
    from routines.backends.transformers import TransformersBackend

    samples = [s for s in branch_samples(tset) if s.query_id in ("q-t01", "q-t04")]
    options = RunOptions(constrain="routine", max_tokens=160, progress=False)
    results = await run_samples(samples, TransformersBackend(threads=1), options)
    assert len(results) == 7
    finished = [r for r in results if r.meta["finish_reason"] == "stop"]
    assert finished  # most calls are short
    for r in finished:
        assert r.verdict.structural and r.verdict.category not in ("tool.prose", "tool.count", "tool.invented")
        assert r.verdict.call is not None and r.verdict.call.name in {t.name for t in r.sample.tools}
    for r in results:  # the only unparsable outputs are the ones cut off at max_tokens
        assert r.verdict.structural or r.meta["finish_reason"] == "length"


@pytest.mark.model
@pytest.mark.timeout(240)
async def test_two_embedded_model_workers_give_the_outputs_of_one_backend_in_process(tset: TrajectorySet) -> None:
    """float32 batching is exact, so how the lanes cut and share the work does not change a single output."""
    from routines.backends.transformers import TransformersBackend

    samples = [s for s in branch_samples(tset) if s.query_id in ("q-t04", "q-t07")]  # two Routines, 3 steps each
    options = RunOptions(max_tokens=32, chunk=2, progress=False)
    workers = [ProcessBackend(create_backend, kind="local", threads=1, dtype="float32") for _ in range(2)]
    try:
        together = await run_samples(samples, workers, options)
        assert {w.name for w in workers} == {"transformers"}
    finally:
        await close_all(workers)
    alone = await run_samples(samples, TransformersBackend(threads=1, dtype="float32"), options)
    assert len(together) == len(samples) == 6
    assert [r.output for r in together] == [r.output for r in alone]
    assert [r.verdict for r in together] == [r.verdict for r in alone]


@pytest.mark.parametrize("lanes", [1, 2])
async def test_every_batch_is_decoded_under_its_own_samples_next_step_constraint(tset: TrajectorySet, lanes: int) -> None:
    """With ``next``, a batch must never carry another sample's constraint (a chunk spans several steps of a
    Routine: decoding them all under the first step's tool forced every call to that tool)."""
    samples = branch_samples(tset, tools_in_prompt="routine")
    backends = [BatchingBackend(samples) for _ in range(lanes)]
    results = await run_samples(samples, backends if lanes > 1 else backends[0],
                                RunOptions(constrain="next", chunk=16, progress=False))
    assert all(r.verdict.overall for r in results)
    for backend in backends:
        for size, constraint in zip(backend.batches, backend.constraints, strict=True):
            assert constraint is not None and size >= 1
    # each sample was decoded under exactly the tools its step allows
    allowed = {tuple(sorted(t.name for t in s.allowed("next"))) for s in samples}
    sent = {tuple(t.name for t in c.tools) for b in backends for c in b.constraints if c is not None}
    assert sent == allowed and len(sent) > 1
