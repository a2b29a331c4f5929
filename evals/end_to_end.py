"""End-to-end evaluation (design 7): each query runs through the executor in ``model`` mode against the live
scenario servers, and is scored on task success: it reached the finish step, made the gold calls (judged by
the checker, :mod:`evals.gold`, free text by presence and type) and gave the gold answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from evals.configs import CONFIGS, EvalConfig, RoutineCatalog
from evals.decompose import Sample, Trajectory, decompose
from evals.gold import answers_match, mismatches
from evals.runner import DEFAULT_MAX_TOKENS, batches_for_real, progress_bar
from memory.variables import VariableMemory
from routines.backends.base import Backend, ToolSpec
from routines.backends.process import start_all
from routines.calls import ToolCall
from routines.executor import Executor, ExecutorConfig
from routines.run_config import ConstrainMode, MemoryLayout, ToolsInPrompt, prompt_tools


@dataclass(frozen=True)
class TaskResult:
    """One whole query run by the executor, scored against its trajectory."""

    query_id: str
    routine_id: str
    finished: bool
    calls_ok: bool
    answer_ok: bool
    error: str | None
    calls: list[dict[str, Any]]
    expected_calls: list[dict[str, Any]]
    answer: str | None
    expected_answer: str | None
    model_requests: int
    seconds: float

    @property
    def success(self) -> bool:
        return self.finished and self.calls_ok and self.answer_ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id, "routine_id": self.routine_id, "success": self.success,
            "finished": self.finished, "calls_ok": self.calls_ok, "answer_ok": self.answer_ok, "error": self.error,
            "answer": self.answer, "expected_answer": self.expected_answer, "calls": self.calls,
            "expected_calls": self.expected_calls, "model_requests": self.model_requests,
            "seconds": round(self.seconds, 3),
        }


def calls_match(made: Sequence[ToolCall], traj: Trajectory, tools: Sequence[ToolSpec]) -> bool:
    """The run made the trajectory's calls, in order, each right by the checker."""
    return not mismatches(traj.calls, made, tools)


async def run_end_to_end(
    trajectories: Sequence[Trajectory],
    catalog: RoutineCatalog,
    hub: Any,
    backend: Backend,
    *,
    config: EvalConfig = CONFIGS["e2e"],
    constrain: ConstrainMode = "none",
    tools_in_prompt: ToolsInPrompt = "routine",
    concurrency: int = 4,
    max_retries: int = 2,
    memory_threshold: int = 256,
    memory_layout: MemoryLayout = "fields",
    max_tokens: int = DEFAULT_MAX_TOKENS,
    today: str | None = None,
    progress: bool = True,
    on_result: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Run each trajectory's query with the executor (model mode, the Routine as ``config`` shows it) and
    score it. ``constrain`` and ``tools_in_prompt`` are the executor's settings, as in production. The embedded model runs one query at a time (its prefix cache follows a run)."""
    await start_all([backend])
    tools = await hub.list_tools()
    exec_config = ExecutorConfig(
        mode="model", constrain=constrain, tools_in_prompt=tools_in_prompt, prompt=config.options, max_retries=max_retries,
        memory_threshold=memory_threshold, memory_layout=memory_layout, max_tokens=max_tokens, today=today,
    )
    executor = Executor(hub, backend, exec_config, variables=VariableMemory)
    results: list[TaskResult | None] = [None] * len(trajectories)
    bar = progress_bar(len(trajectories), progress, config.name)
    limit = anyio.Semaphore(1 if batches_for_real(backend) else max(1, concurrency))

    async def one(i: int) -> None:
        traj = trajectories[i]
        async with limit:
            started = time.perf_counter()
            run = await executor.run(catalog.routine(traj.routine_id), traj.query, user_id=None, system=traj.system)
            seconds = time.perf_counter() - started
        made = [ToolCall(c.tool, c.arguments) for c in run.calls]
        result = TaskResult(
            query_id=traj.query_id, routine_id=traj.routine_id, finished=run.ok,
            calls_ok=calls_match(made, traj, tools), answer_ok=answers_match(run.answer, traj.answer),
            error=run.error, calls=[c.as_dict() for c in made],
            expected_calls=[c.call.as_dict() for c in traj.calls], answer=run.answer,
            expected_answer=traj.answer, model_requests=sum(1 for a in run.attempts if a.source == "model"),
            seconds=seconds,
        )
        results[i] = result
        bar.update(1)
        if on_result is not None:
            on_result(result)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(trajectories)):
                tg.start_soon(one, i)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def e2e_samples(
    trajectories: Sequence[Trajectory], catalog: RoutineCatalog, tools: Sequence[ToolSpec],
    tools_in_prompt: ToolsInPrompt = "routine",
) -> list[Sample]:
    """The per-step samples an end-to-end run sends when every call is right (servers' tool order): what a
    scripted oracle needs to answer an e2e run."""
    config = CONFIGS["e2e"]
    by_name = {t.name: t for t in tools}
    return decompose(
        trajectories, tools, routines=lambda t: [catalog.routine(t.routine_id)], options=config.options,
        shuffle="none", config=config.name,
        listed=lambda t: [s.name for s in prompt_tools([catalog.routine(t.routine_id)], by_name, tools_in_prompt)],
    )
