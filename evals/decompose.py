"""Trajectories and their decomposition into per-step test samples (paper 5.1.2, design 4.4).

A **trajectory** (:class:`routines.trajectory.Trajectory`, the executor's own run record) is one gold query
run to its end by the executor in ``bound`` mode through the scenario's own servers, so every observation
and every variable-memory preview is exactly what a model would have seen at run time. Trajectories are
checked against the scenario's gold calls by the checker (:mod:`evals.gold`) and cached as JSONL under the
data directory (keyed by a fingerprint of the gold data, the Routines and the memory threshold).

A **sample** is one call of a trajectory: the run's system prompt (fixed for the run: the conversation is
append-only), the query and the turns before it, the tool list in a seeded random order (every downstream
tool under the paper's protocol, the shown Routines' tools under the product's), the expected call, the
tools the Routine allowed next (for the ``next`` constraint) and the names of its free-text parameters. The
prompt and the conversation come from :func:`routines.prompt.build_system_prompt` and
:func:`routines.prompt.build_messages`, the builders the executor itself uses, so a sample's messages are
byte for byte what the executor sends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from evals.gold import free_text_of, gold_differences
from memory.variables import VariableMemory
from routines.backends.base import Message, ToolSpec
from routines.calls import ToolCall
from routines.errors import CallerError
from routines.executor import Executor, ExecutorConfig
from routines.model import Routine
from routines.prompt import PromptOptions, build_messages, build_system_prompt, seeded_order
from routines.run_config import MemoryLayout
from routines.trajectory import Call, Trajectory

__all__ = ["Call", "Sample", "Trajectory", "TrajectorySet", "decompose", "load_trajectories", "select_queries"]

log = logging.getLogger(__name__)

Shuffle = Literal["per-routine", "per-query", "per-sample", "none"]
SHUFFLES: tuple[str, ...] = ("per-routine", "per-query", "per-sample", "none")
DEFAULT_SHUFFLE: Shuffle = "per-routine"
"""Measured in docs/evaluation.md: one order per Routine lets the samples of all queries of a Routine share
their prompt prefix (tools and Routine) in the embedded backend's KV cache."""
CACHE_VERSION = 2


@dataclass(frozen=True)
class Sample:
    """One per-step test sample."""

    id: str
    query_id: str
    index: int
    """Position of the call in its trajectory (0-based)."""
    step: str
    routine_id: str
    variant: str | None
    system_prompt: str
    query: str
    history: tuple[Call, ...]
    """The trajectory's calls before this one (the conversation is built from them)."""
    tools: tuple[ToolSpec, ...]
    expected: ToolCall
    free_text: tuple[str, ...] = ()
    config: str = ""
    next_tools: tuple[str, ...] = ()
    """Tools of ``tools`` the Routine allows at this step (empty without a Routine)."""

    def allowed(self, constrain: str) -> tuple[ToolSpec, ...]:
        """The tools a constraint mode admits: ``next`` the Routine's next step(s), else every listed tool."""
        if constrain == "next" and self.next_tools:
            return tuple(t for t in self.tools if t.name in self.next_tools)
        return self.tools

    def messages(self) -> list[Message]:
        """The conversation as the executor sends it to the model at this step."""
        return build_messages(self.system_prompt, self.query, self.history)

    def describe(self) -> dict[str, Any]:
        """Everything but the (long) prompt: what a report keeps of a sample."""
        return {
            "id": self.id, "query_id": self.query_id, "index": self.index, "step": self.step,
            "routine_id": self.routine_id, "variant": self.variant, "config": self.config,
            "expected": self.expected.as_dict(), "free_text": list(self.free_text),
        }


# ---- decomposition --------------------------------------------------------------------------------

RoutinesFor = Callable[[Trajectory], Sequence[Routine | str]]
ToolsFor = Callable[[Trajectory], Sequence[str] | None]
"""The tool names a trajectory's prompt lists (``None``: every tool)."""


def order_tools(tools: Sequence[ToolSpec], seed: int, key: str) -> tuple[ToolSpec, ...]:
    """``tools`` in a random order that depends only on ``seed`` and ``key``."""
    return tuple(seeded_order(tools, seed, key))


def decompose(
    trajectories: Sequence[Trajectory],
    tools: Sequence[ToolSpec],
    *,
    routines: RoutinesFor | None,
    options: PromptOptions | None = None,
    seed: int = 0,
    shuffle: Shuffle = DEFAULT_SHUFFLE,
    config: str = "",
    listed: ToolsFor | None = None,
) -> list[Sample]:
    """One sample per call of every trajectory. ``routines`` gives the Routine(s) (or text) the prompt shows
    for a trajectory (``None``: no Routine); ``listed`` the names of the tools its prompt lists (``None``:
    all of ``tools``, the paper's protocol); ``shuffle`` gives the tool list one seeded random order per
    Routine, per query or per sample, or keeps the servers' order (``none``, as the executor lists them).
    The order is drawn over all tools and then filtered, so both protocols order a tool pair alike."""
    if shuffle not in SHUFFLES:
        raise CallerError(f"unknown tool shuffle {shuffle!r}; use one of {', '.join(SHUFFLES)}")
    options = options or PromptOptions()
    samples: list[Sample] = []
    for traj in trajectories:
        shown = list(routines(traj)) if routines is not None else []
        listed_names = listed(traj) if listed is not None else None
        names = set(listed_names) if listed_names is not None else None

        def keep(ts: tuple[ToolSpec, ...], names: set[str] | None = names) -> tuple[ToolSpec, ...]:
            return ts if names is None else tuple(t for t in ts if t.name in names)

        key = traj.routine_id if shuffle == "per-routine" else traj.query_id
        query_tools = keep(tuple(tools) if shuffle == "none" else order_tools(tools, seed, key))
        history: list[Call] = []
        prompt = build_system_prompt(routines=shown, tools=query_tools, system=traj.system, options=options)
        for index, call in enumerate(traj.calls):
            step_tools = query_tools
            if shuffle == "per-sample":  # a tool order per sample: the prompt changes at every step
                step_tools = keep(order_tools(tools, seed, f"{traj.query_id}/{index}"))
                prompt = build_system_prompt(routines=shown, tools=step_tools, system=traj.system, options=options)
            expected = call.call
            samples.append(
                Sample(
                    id=f"{traj.query_id}/{index}", query_id=traj.query_id, index=index, step=call.step,
                    routine_id=traj.routine_id, variant=traj.variant, system_prompt=prompt, query=traj.query,
                    history=tuple(history), tools=step_tools, expected=expected, free_text=call.free_text,
                    config=config, next_tools=call.next_tools if shown else (),
                )
            )
            history.append(call)
    return samples


def select_queries(trajectories: Sequence[Trajectory], min_steps: int | None, seed: int) -> list[Trajectory]:
    """A seeded subset of whole queries holding at least ``min_steps`` steps (all when ``None`` or when
    there are not that many). Whole queries keep every sample's history and let samples share a prefix."""
    if min_steps is None:
        return list(trajectories)
    order = list(trajectories)
    random.Random(f"{seed}:subset").shuffle(order)
    picked: list[Trajectory] = []
    steps = 0
    for traj in order:
        if steps >= min_steps:
            break
        picked.append(traj)
        steps += len(traj.calls)
    keep = {t.query_id for t in picked}
    return [t for t in trajectories if t.query_id in keep]


# ---- recording trajectories -----------------------------------------------------------------------


async def record_trajectories(
    gold: Sequence[Mapping[str, Any]],
    routines: Mapping[str, Routine],
    hub: Any,
    *,
    config: ExecutorConfig | None = None,
    on_done: Callable[[], None] | None = None,
) -> tuple[list[Trajectory], list[str]]:
    """Run every gold query in bound mode; the trajectories that reproduce their gold calls, and a line
    for each one that did not (left out)."""
    config = replace(config or ExecutorConfig(), mode="bound")
    executor = Executor(hub, None, config, variables=VariableMemory)
    tools = await hub.list_tools()
    kept: list[Trajectory] = []
    problems: list[str] = []
    for record in gold:
        routine_id = record["routine_id"]
        if routine_id not in routines:
            raise CallerError(f"gold query {record.get('id')} names Routine {routine_id!r}, which the scenario lacks")
        result = await executor.run(
            routines[routine_id], record["query"], inputs=record.get("inputs") or {}, user_id=record.get("user_id"),
            system=record.get("system"),
        )
        if on_done is not None:
            on_done()
        if not result.ok:
            problems.append(f"{record.get('id')}: the bound run failed: {result.error}")
            continue
        found = gold_differences(record, result.calls, tools, config.memory_threshold, nested=config.nested_memory)
        if found:
            problems.extend(f"{record.get('id')}: {line}" for line in found)
            continue
        # The cache keeps what the model saw (the tools' arguments and results are the servers' business),
        # and the gold's free-text annotations.
        gold_calls = record.get("calls") or []
        calls = tuple(
            replace(c, resolved_arguments=None, result=None, free_text=free_text_of(g))
            for c, g in zip(result.calls, gold_calls, strict=True)
        )
        traj = replace(result.trajectory(), calls=calls, inputs=dict(record.get("inputs") or {}))
        kept.append(traj.with_labels(query_id=str(record["id"]), variant=record.get("variant")))
    return kept, problems


# ---- the cache ------------------------------------------------------------------------------------


@dataclass
class TrajectorySet:
    """The trajectories of one scenario split, with the tool list the executor showed (servers' order)."""

    scenario: str
    split: str
    tools: list[ToolSpec]
    trajectories: list[Trajectory]
    problems: list[str]
    fingerprint: str

    @property
    def steps(self) -> int:
        return sum(len(t.calls) for t in self.trajectories)


def fingerprint(gold: Sequence[Mapping[str, Any]], routines: Mapping[str, Routine], memory_threshold: int,
                memory_layout: str = "fields") -> str:
    layout = "" if memory_layout == "fields" else f":{memory_layout}"  # caches of the fields layout stay valid
    h = hashlib.sha256(f"v{CACHE_VERSION}:{memory_threshold}{layout}".encode())
    for record in gold:
        h.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
    for rid in sorted(routines):
        h.update(routines[rid].model_dump_json().encode())
    return h.hexdigest()[:16]


def cache_path(data_dir: str | Path, scenario: str, split: str) -> Path:
    return Path(data_dir).expanduser() / "evals" / scenario / f"trajectories_{split}.jsonl"


def write_cache(path: Path, tset: TrajectorySet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "scenario": tset.scenario, "split": tset.split, "fingerprint": tset.fingerprint,
        "tools": [t.as_dict() for t in tset.tools], "problems": tset.problems,
    }
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"meta": meta}, ensure_ascii=False) + "\n")
        for traj in tset.trajectories:
            fh.write(json.dumps(traj.as_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_cache(path: Path) -> TrajectorySet | None:
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh if line.strip()]
    if not lines or "meta" not in lines[0]:
        return None
    meta = lines[0]["meta"]
    return TrajectorySet(
        scenario=meta["scenario"], split=meta["split"], tools=[ToolSpec.from_mcp(t) for t in meta["tools"]],
        trajectories=[Trajectory.from_dict(d) for d in lines[1:]], problems=list(meta.get("problems") or []),
        fingerprint=meta["fingerprint"],
    )


async def load_trajectories(
    scenario: Any,
    split: str,
    data_dir: str | Path,
    *,
    servers: Mapping[str, Any] | None = None,
    refresh: bool = False,
    memory_threshold: int = 256,
    memory_layout: MemoryLayout = "fields",
    on_done: Callable[[], None] | None = None,
) -> TrajectorySet:
    """The cached trajectories of ``scenario`` (a ``routines.scenario.Scenario``) for ``split``, recorded
    through its servers (or ``servers``, e.g. in-memory ones) when the cache is missing or stale."""
    from routines.hub import ToolHub

    gold = scenario.gold(split)
    routines = scenario.routine_map()
    fp = fingerprint(gold, routines, memory_threshold, memory_layout)
    path = cache_path(data_dir, scenario.name, split)
    cached = None if refresh else read_cache(path)
    if cached is not None and cached.fingerprint == fp:
        return cached
    async with ToolHub.from_config(servers or scenario.servers(data_dir)) as hub:
        tools = await hub.list_tools()
        config = ExecutorConfig(mode="bound", memory_threshold=memory_threshold, memory_layout=memory_layout)
        trajectories, problems = await record_trajectories(gold, routines, hub, config=config, on_done=on_done)
    for line in problems:
        log.warning("trajectory left out: %s", line)
    tset = TrajectorySet(scenario.name, split, tools, trajectories, problems, fp)
    write_cache(path, tset)
    log.info("recorded %d trajectories (%d steps) to %s", len(trajectories), tset.steps, path)
    return tset
