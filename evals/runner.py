"""Running per-step samples through a model backend and judging them.

Per-step mode (:func:`run_samples`): samples go to the backend in query/step order. A backend that batches
for real (``TransformersBackend.complete_batch``: shared-prefix groups, KV reuse between the nested prompts
of one query) gets them in chunks; any other backend (OpenAI-compatible HTTP, MCP sampling, scripted) gets
one request per sample, ``concurrency`` at a time. Every output is judged by :mod:`evals.checker`.

Several backends (worker processes, :class:`routines.backends.process.ProcessBackend`) run as lanes, one
chunk at a time each. A backend keeps the KV cache of its last shared prefix (a Routine's system prompt,
about 5,000 tokens), so a chunk holds one Routine, and a lane sticks to its Routine and then moves on to the
largest Routine nobody works on (:func:`pick_routine`); near the end chunks shrink so the lanes finish
together.

Constrained decoding, when asked for, allows one call to **any** tool of the sample's tool list (``routine``)
or to any tool the Routine allows at that step (``next``: the next step's tool, at a branch the first tools
of all its branches), never only the expected tool where the Routine leaves a choice, which would hand the
model the answer. Without a Routine in the prompt, ``next`` is ``routine``.

End-to-end runs (whole queries through the executor) are :mod:`evals.end_to_end`.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from evals.checker import Verdict, check_call
from evals.decompose import Sample
from routines.backends.base import Backend, BaseBackend, Completion, Constraint, Message, ToolSpec
from routines.backends.process import ProcessBackend, start_all
from routines.backends.scripted import ScriptedBackend
from routines.errors import PromptTooLong
from routines.executor import ExecutorConfig
from routines.run_config import ConstrainMode, constrain_mode

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = ExecutorConfig().max_tokens


@dataclass(frozen=True)
class SampleResult:
    sample: Sample
    output: str
    verdict: Verdict
    latency_s: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.sample.describe(), "output": self.output, "verdict": self.verdict.as_dict(),
            "latency_s": round(self.latency_s, 4), "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens, "meta": self.meta,
        }


@dataclass(frozen=True)
class RunOptions:
    constrain: ConstrainMode = "none"
    max_tokens: int = DEFAULT_MAX_TOKENS
    concurrency: int = 8
    """Requests in flight at once, for backends that do not batch (HTTP)."""
    chunk: int = 192
    """Samples per ``complete_batch`` call, for backends that batch (the backend groups them further and
    decodes ``max_batch`` at a time, a finished row's slot taking the next waiting one; larger calls drain
    the batch at the end less often)."""
    progress: bool = True

    def __post_init__(self) -> None:
        # booleans (the older setting) read as a mode, as in ExecutorConfig: False must not constrain
        object.__setattr__(self, "constrain", constrain_mode(self.constrain))


def batches_for_real(backend: Backend) -> bool:
    """True when the backend overrides ``complete_batch`` (the embedded model); HTTP backends do not. A
    :class:`ProcessBackend` batches when the backend it serves does (it must be started to know)."""
    if isinstance(backend, ProcessBackend):
        if backend.batches is None:
            raise RuntimeError("start the ProcessBackend first (await backend.start()) to know whether it batches")
        return backend.batches
    method = getattr(type(backend), "complete_batch", None)
    return method is not None and method is not BaseBackend.complete_batch


def tool_constraint(tools: Sequence[ToolSpec]) -> Constraint:
    """One call to any of ``tools``; sorted by name, so samples with the same tool set share one grammar."""
    return Constraint(tools=tuple(sorted(tools, key=lambda t: t.name)))


def sample_constraint(sample: Sample, constrain: str) -> Constraint | None:
    """The constraint a sample is decoded under in a constraint mode (``none``: no constraint)."""
    return None if constrain == "none" else tool_constraint(sample.allowed(constrain))


def progress_bar(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, unit="step", desc=desc, dynamic_ncols=True)


def _too_long(sample: Sample, reason: str) -> SampleResult:
    """A sample whose prompt does not fit the model's context: nothing was generated, and it counts as wrong."""
    verdict = Verdict(structural=False, tool=None, parameters=None, overall=False, category="context", detail=reason)
    return SampleResult(sample, "", verdict, meta={"finish_reason": "context"})


def _judge(sample: Sample, completion: Completion) -> SampleResult:
    verdict = check_call(completion.text, sample.expected, sample.tools, sample.free_text)
    meta = {k: v for k, v in completion.meta.items() if k in ("finish_reason", "reused_prompt_tokens", "batch_size")}
    return SampleResult(
        sample, completion.text, verdict, completion.latency_s, completion.prompt_tokens, completion.output_tokens, meta
    )


def _chunks(samples: Sequence[Sample], size: int, constrain: str = "none") -> Iterator[list[Sample]]:
    """Runs of consecutive samples with the same tool set (the tools the constraint mode admits), at most
    ``size`` long: one chunk is decoded under one constraint."""
    current: list[Sample] = []

    def names(s: Sample) -> set[str]:
        return {t.name for t in s.allowed(constrain)}

    for sample in samples:
        if current and (len(current) >= size or names(current[0]) != names(sample)):
            yield current
            current = []
        current.append(sample)
    if current:
        yield current


def pick_routine(left: Mapping[str, int], last: str | None, others: Collection[str | None]) -> str | None:
    """The Routine whose next chunk a lane takes: the one it did last while any of it is left (its prefix
    is cached there); else the one with the most ``left`` (samples not yet taken) that no other lane is on
    (``others``: their current Routines); else the one with the most left. ``None`` when nothing is left.
    Ties go to the first in ``left``'s order."""
    if last is not None and left.get(last, 0) > 0:
        return last
    live = [key for key, n in left.items() if n > 0]
    untouched = [key for key in live if key not in others]
    pool = untouched or live
    return max(pool, key=lambda key: left[key]) if pool else None


async def run_samples(
    samples: Sequence[Sample],
    backend: Backend | Sequence[Backend],
    options: RunOptions = RunOptions(),
    *,
    desc: str = "",
    on_result: Callable[[SampleResult], None] | None = None,
) -> list[SampleResult]:
    """Every sample's output and verdict, in the order of ``samples``. They are sent grouped by Routine,
    then query, then step: the order in which their prompts share the most.

    ``backend`` may be several backends (lanes, e.g. worker processes; started here if they are not yet).
    When they all batch, each lane sends chunks of one Routine at a time (:func:`pick_routine`); otherwise
    samples go to them in turn, ``concurrency`` requests at a time."""
    lanes: list[Backend] = list(backend) if isinstance(backend, Sequence) else [backend]
    if not lanes:
        raise ValueError("run_samples needs at least one backend")
    await start_all(lanes)
    ordered = sorted(range(len(samples)), key=lambda i: (samples[i].routine_id, samples[i].query_id, samples[i].index))
    results: list[SampleResult | None] = [None] * len(samples)
    bar = progress_bar(len(samples), options.progress, desc)

    def done(i: int, result: SampleResult) -> None:
        results[i] = result
        bar.update(1)
        if on_result is not None:
            on_result(result)

    position = {id(samples[i]): i for i in ordered}

    async def run_chunk(lane: Backend, chunk: list[Sample]) -> None:
        """One ``complete_batch`` per constraint: the samples of a chunk that admit the same tools. Samples
        whose prompt does not fit the model are scored wrong (category ``context``) and the rest sent again."""
        for group in constraint_groups(chunk, options.constrain):
            constraint = sample_constraint(group[0], options.constrain)
            while group:
                try:
                    completions = await lane.complete_batch(  # type: ignore[attr-defined]
                        [s.messages() for s in group], constraint=constraint, max_tokens=options.max_tokens
                    )
                except PromptTooLong as exc:
                    if not exc.indices:
                        raise
                    too_long = set(exc.indices)
                    for i in sorted(too_long):
                        done(position[id(group[i])], _too_long(group[i], str(exc)))
                    group = [s for i, s in enumerate(group) if i not in too_long]
                    continue
                for sample, completion in zip(group, completions, strict=True):
                    done(position[id(sample)], _judge(sample, completion))
                break

    try:
        if all(batches_for_real(lane) for lane in lanes):
            if len(lanes) == 1:
                for chunk in _chunks([samples[i] for i in ordered], max(1, options.chunk), options.constrain):
                    await run_chunk(lanes[0], chunk)
            else:
                size = max(1, options.chunk)
                await _run_lanes(lanes, _routine_chunks([samples[i] for i in ordered], size), size, run_chunk)
        else:
            limit = anyio.Semaphore(max(1, options.concurrency))

            async def one(i: int, lane: Backend) -> None:
                sample = samples[i]
                async with limit:
                    constraint = sample_constraint(sample, options.constrain)
                    try:
                        completion = await lane.complete(
                            sample.messages(), constraint=constraint, max_tokens=options.max_tokens
                        )
                    except PromptTooLong as exc:
                        done(i, _too_long(sample, str(exc)))
                        return
                done(i, _judge(sample, completion))

            async with anyio.create_task_group() as tg:
                for n, i in enumerate(ordered):
                    tg.start_soon(one, i, lanes[n % len(lanes)])
    finally:
        bar.close()
    return [r for r in results if r is not None]


def constraint_groups(samples: Sequence[Sample], constrain: str) -> list[list[Sample]]:
    """``samples`` grouped by the tools the constraint mode admits (one group without a constraint), each
    group in the samples' order: a batch is decoded under one constraint."""
    if constrain == "none":
        return [list(samples)] if samples else []
    groups: dict[tuple[str, ...], list[Sample]] = {}
    for sample in samples:
        groups.setdefault(tuple(sorted(t.name for t in sample.allowed(constrain))), []).append(sample)
    return list(groups.values())


def _routine_chunks(ordered: Sequence[Sample], size: int) -> dict[str, deque[list[Sample]]]:
    """The chunks of each Routine (``_chunks`` of its samples, in order): a chunk never spans two Routines."""
    by_routine: dict[str, list[Sample]] = {}
    for sample in ordered:
        by_routine.setdefault(sample.routine_id, []).append(sample)
    return {rid: deque(_chunks(group, size)) for rid, group in by_routine.items()}


def _take(queue: deque[list[Sample]], most: int) -> list[Sample]:
    """The first ``most`` samples of the queue's first chunk (all of it when it is no longer)."""
    chunk = queue[0]
    if len(chunk) > most:
        queue[0] = chunk[most:]
        return chunk[:most]
    return queue.popleft()


async def _run_lanes(
    lanes: Sequence[Backend],
    queues: dict[str, deque[list[Sample]]],
    size: int,
    run_chunk: Callable[[Backend, list[Sample]], Any],
) -> None:
    """One task per lane; each takes its next chunk by :func:`pick_routine` until none is left. Near the
    end a lane takes less than ``size``: its share of the samples left and in flight (at least
    ``size // 8``), so that a last Routine, or a run of one Routine, is split between the lanes."""
    current: list[str | None] = [None] * len(lanes)
    in_flight = [0] * len(lanes)
    least = max(1, size // 8)

    async def lane(n: int) -> None:
        while True:
            left = {rid: sum(len(chunk) for chunk in queue) for rid, queue in queues.items()}
            others = [rid for m, rid in enumerate(current) if m != n]
            rid = pick_routine(left, current[n], others)
            if rid is None:
                return
            current[n] = rid
            share = -(-(sum(left.values()) + sum(in_flight)) // len(lanes))
            chunk = _take(queues[rid], max(least, share))
            in_flight[n] = len(chunk)
            await run_chunk(lanes[n], chunk)
            in_flight[n] = 0

    async with anyio.create_task_group() as tg:
        for n in range(len(lanes)):
            tg.start_soon(lane, n)


# ---- scripted replies --------------------------------------------------------------------------------


def conversation_key(messages: Sequence[Message]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(f"{m.role}\x00{m.content}\x01".encode())
    return h.hexdigest()


def scripted_backend(samples: Sequence[Sample], outputs: dict[str, str] | None = None, *, repeat: int = 1) -> ScriptedBackend:
    """A ScriptedBackend answering each sample's conversation with ``outputs[sample.id]`` (default: the
    expected call, an oracle that checks the harness end to end). A conversation it does not know (an
    end-to-end run that went off the gold path) gets the reply of the sample with the same query and
    number of tool results; failing that, prose."""
    table: dict[str, str] = {}
    by_position: dict[tuple[str, int], str] = {}
    for s in samples:
        text = outputs.get(s.id, "") if outputs is not None else s.expected.text()
        table[conversation_key(s.messages())] = text
        by_position.setdefault((s.query, s.index), text)

    def reply(messages: Sequence[Message]) -> str:
        found = table.get(conversation_key(messages))
        if found is None:
            query = next((m.content for m in messages if m.role == "user"), "")
            found = by_position.get((query, sum(m.role == "tool" for m in messages)))
        return "I do not know which tool to call." if found is None else found

    return ScriptedBackend([reply] * max(1, len(samples) * repeat))
