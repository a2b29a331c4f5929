"""Scenario distillation (paper 4.2.3, design 4.3): run every query of a scenario with its Routine through the
real executor and downstream servers, keep the clean trajectories, write them as LLaMA-Factory ShareGPT.

The teacher is any model backend (a large model behind an OpenAI-compatible endpoint, paper 4.2.3), run in
``model`` mode with the Routine in its prompt; or ``None``: the executor's ``bound`` mode, the reference
teacher for fully bound Routines, which needs no model at all. A trajectory is kept only if it reaches the
finish step with no failed attempt on the way and, where the scenario has a gold trajectory, matches it by
the evaluation's checker (:mod:`evals.gold`: same tools in the same order, same arguments as a model writes
them, same answer; free-text parameters by presence and type). Every other query is reported with the reason it was dropped.

The record's system prompt is rebuilt with the executor's own prompt builder (the system parameters as the
run had them), with the record's options: the student may be shown the Routine (``with_routine``) or not (the
"internalised" model). The prompt lists the Routine's tools (``tools_in_prompt="routine"``, the product) or
every tool (``"all"``, the paper). Each record gets its own seeded tool order, and the executor runs with that
order, so the prompt's ``<tools>`` block and the record's ``tools`` agree.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evals.gold import free_text_of, gold_differences
from memory.variables import VariableMemory
from routines.backends.base import Backend, ToolSpec
from routines.errors import CallerError
from routines.executor import Executor, ExecutorConfig, RunResult
from routines.flatten import flatten
from routines.hub import ToolHub, ToolResult
from routines.model import Routine
from routines.prompt import PromptOptions, build_system_prompt, seeded_order
from routines.run_config import prompt_tools
from routines.scenario import Scenario
from trainer.augment import augment, scenario_templates
from trainer.errors import TeacherUnavailable
from trainer.lengths import dataset_lengths
from trainer.sharegpt import build_record, write_dataset

log = logging.getLogger(__name__)

MAX_TEACHER_ERRORS = 5
"""Consecutive queries on which the teacher's endpoint fails before distillation stops."""
Progress = Callable[[int, int, str], Awaitable[None] | None]


class DistillOptions(BaseModel):
    """How to distill. The defaults: the Routine in the prompt, its tools listed in a seeded random order per
    record (``tools_in_prompt="all"``: every tool, the paper's dataset), checked against gold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    with_routine: bool = Field(True, description="Show the Routine in the record's system prompt (False: the internalised model).")
    io: bool = Field(False, description="Render the Routine with its input/output descriptions.")
    tool_names: bool = Field(True, description="Name each step's tool in the rendered Routine.")
    tools_in_prompt: Literal["routine", "all"] = Field(
        "routine", description="List only the Routine's tools (the product), or every downstream tool (the paper).")
    shuffle_tools: bool = Field(True, description="A seeded random tool order per record.")
    seed: int = Field(0, description="Seed of the tool order and of the augmentation's choices.")
    augment: int = Field(0, ge=0, description="Extra records per query, reworded with the scenario's other templates.")
    limit: int | None = Field(None, ge=1, description="Use only the first N queries of the split.")
    check_gold: bool = Field(True, description="Drop trajectories that differ from the scenario's gold ones.")
    flatten: bool = Field(False, description="Use the query's unbranched Routine variant instead of the whole Routine.")
    teacher_mode: Literal["model", "hybrid"] = Field("model", description="Executor mode when a teacher model is given.")
    memory_threshold: int = Field(256, description="Tool output values longer than this go to variable memory.")
    max_retries: int = Field(2, description="Bad teacher calls fed back per step (any bad call still drops the record).")
    max_steps: int = Field(16, description="Most steps in one run.")
    constrain: Literal["none", "routine", "next"] = Field(
        "none", description="Constrain the teacher's decoding: none, routine (any listed tool) or next (the Routine's next step).")
    tool_timeout: float = Field(30.0, description="Seconds a downstream tool call may take.")
    name: str | None = Field(None, description="Dataset name (file stem and dataset_info key); default <scenario>_<split>.")
    tools_column: bool = Field(False, description="Also map the 'tools' column in dataset_info.json (LLaMA-Factory "
                               "then lists the tools a second time, after the executor's own list in 'system').")
    lengths: bool = Field(True, description="Measure call and prompt lengths in the embedded model's tokens.")

    def dataset_name(self, scenario: str, split: str) -> str:
        return self.name or f"{scenario}_{split}" + ("" if self.with_routine else "_noroutine")

    def record_prompt(self) -> PromptOptions:
        return PromptOptions(with_routine=self.with_routine, io=self.io, tool_names=self.tool_names)

    def executor_config(self, mode: Literal["model", "hybrid", "bound"]) -> ExecutorConfig:
        """The teacher always sees the Routine (paper 4.2.3), whatever the record shows."""
        return ExecutorConfig(
            mode=mode, max_steps=self.max_steps, max_retries=self.max_retries, memory_threshold=self.memory_threshold,
            prompt=PromptOptions(with_routine=True, io=self.io, tool_names=self.tool_names),
            tools_in_prompt=self.tools_in_prompt, constrain=self.constrain, tool_timeout=self.tool_timeout,
        )


DEFAULT_OPTIONS = DistillOptions()


@dataclass
class DistillReport:
    """What a distillation produced. ``dropped``: one ``{"id", "reason"}`` per query without a record."""

    scenario: str
    split: str
    teacher: str
    queries: int
    kept: int
    records: int
    calls: int
    dropped: list[dict[str, str]]
    out_path: Path
    dataset_info_path: Path
    report_path: Path
    dataset: str
    augmented: int = 0
    without_phrasings: list[str] = field(default_factory=list)
    gold_checked: int = 0
    seconds: float = 0.0
    lengths: dict[str, Any] = field(default_factory=dict)
    """Token lengths of calls and system prompts (:func:`trainer.lengths.dataset_lengths`)."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("out_path", "dataset_info_path", "report_path"):
            out[key] = str(out[key])
        return out


class _OrderedTools:
    """The hub as one record's executor sees it: the same tools in this record's order."""

    def __init__(self, hub: ToolHub, tools: list[ToolSpec]) -> None:
        self.hub = hub
        self.tools = tools

    async def list_tools(self, refresh: bool = False) -> list[ToolSpec]:
        return list(self.tools)

    async def call(self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None) -> ToolResult:
        return await self.hub.call(name, arguments, timeout=timeout)


def tool_order(tools: Sequence[ToolSpec], record_id: str, options: DistillOptions) -> list[ToolSpec]:
    """The record's tool order: seeded by the options' seed and the record id, so reruns agree."""
    return seeded_order(tools, options.seed, record_id) if options.shuffle_tools else list(tools)


def listed_tools(order: Sequence[ToolSpec], routine: Routine, options: DistillOptions) -> list[ToolSpec]:
    """The tools the executor lists in its prompt (``Executor.run`` picks them with the same function): a
    record without its Routine in the prompt (the internalised student) lists every tool, as a run without a
    Routine does."""
    shown = [routine] if options.with_routine else []
    return prompt_tools(shown, {t.name: t for t in order}, options.tools_in_prompt)


def routine_table(routines: Sequence[Routine], with_variants: bool) -> dict[str, Routine]:
    table: dict[str, Routine] = {}
    for r in routines:
        table[r.id or r.name] = r
        if with_variants:
            table.update({v.id or v.name: v for v in flatten(r)})
    return table


def routine_for(query: Mapping[str, Any], table: Mapping[str, Routine], options: DistillOptions) -> Routine | None:
    """The Routine a query runs with: its variant when flattening, else its whole Routine."""
    variant, routine_id = query.get("variant"), query.get("routine_id")
    if options.flatten and variant in table:
        return table[variant]
    if routine_id in table:
        return table[routine_id]
    base = str(routine_id or variant or "").split("/")[0]
    return table.get(base)


def failure(result: RunResult, routine: Routine) -> str | None:
    """Why a run cannot be a training record, or None."""
    if not result.ok:
        return f"{result.error_kind or 'run'} error: {result.error}"
    bad = next((a for a in result.attempts if a.error), None)
    if bad is not None:
        return f"failed attempt at step {bad.step or '?'} ({bad.error_kind}): {bad.error}"
    if not result.calls:
        return "no calls made"
    if any(s.type == "finish" for s in routine.steps) and routine.step(result.calls[-1].step).type != "finish":
        return f"stopped at step {result.calls[-1].step}, not at a finish step"
    return None


def compare_to_gold(result: RunResult, gold: Mapping[str, Any], tools: Sequence[ToolSpec], threshold: int,
                    *, nested: bool = False) -> str | None:
    """How a run differs from its gold trajectory, or None: the checker's verdict on every call, values
    equal as written (:mod:`evals.gold`, the one judge), then the same answer (unless a free-text parameter
    differed, which excuses a different answer). A call that copies a stored value instead of passing its
    ``memory_*`` key differs: training on it would teach copying."""
    found = gold_differences(gold, result.calls, tools, threshold, steps=False, nested=nested)
    if found:
        return "; ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else "")
    loose = any(
        call.resolved_arguments and any(call.resolved_arguments.get(p) != g.get("arguments", {}).get(p)
                                        for p in free_text_of(g))
        for call, g in zip(result.calls, gold.get("calls") or [], strict=False)
    )
    if "answer" in gold and not loose and result.answer != gold["answer"]:
        return f"answer {_short(result.answer)} differs from gold {_short(gold['answer'])}"
    return None


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_record(query: Mapping[str, Any], routine: Routine, order: Sequence[ToolSpec], result: RunResult,
                options: DistillOptions) -> dict[str, Any]:
    """The ShareGPT record of a clean run, its prompts rebuilt with the executor's builder."""
    tools = listed_tools(order, routine, options)
    system = build_system_prompt(routines=[routine], tools=tools, system=result.system, options=options.record_prompt())
    return build_record(
        record_id=str(query["id"]), trajectory=result.trajectory(), system=system, tools=tools,
        query_id=str(query.get("augmented_from") or query["id"]), routine_id=routine.id or routine.name,
        routine_in_prompt=options.with_routine,
    )


def _gold(scenario: Scenario, split: str) -> dict[str, dict[str, Any]]:
    try:
        return {str(g["id"]): g for g in scenario.gold(split)}
    except CallerError:
        log.info("scenario %s has no gold trajectories for %s; records are not checked against gold", scenario.name, split)
        return {}


async def _notify(on_progress: Progress | None, done: int, total: int, message: str) -> None:
    if on_progress is not None:
        out = on_progress(done, total, message)
        if inspect.isawaitable(out):
            await out


async def distill_query(
    query: Mapping[str, Any], *, hub: ToolHub, tools: Sequence[ToolSpec], table: Mapping[str, Routine],
    teacher: Backend | None, config: ExecutorConfig, gold: Mapping[str, Any] | None, options: DistillOptions,
) -> tuple[dict[str, Any] | None, str | None, bool]:
    """Run one query: (its record, None, gold checked) when clean, else (None, why not, gold checked).
    A teacher endpoint that cannot answer raises TeacherUnavailable."""
    qid = str(query.get("id"))
    routine = routine_for(query, table, options)
    if routine is None:
        return None, f"no Routine {query.get('routine_id')!r} in the scenario", False
    order = tool_order(tools, qid, options)
    executor = Executor(_OrderedTools(hub, order), teacher, config, variables=VariableMemory)
    try:
        result = await executor.run(routine, str(query["query"]), inputs=query.get("inputs"),
                                    user_id=query.get("user_id"), system=query.get("system"))
    except CallerError as exc:
        return None, f"caller error: {exc}", False
    except ConnectionError as exc:
        raise TeacherUnavailable(str(exc)) from exc
    if result.error_kind == "backend":
        raise TeacherUnavailable(result.error or "the teacher's endpoint failed")
    reason = failure(result, routine)
    if reason is not None:
        return None, reason, False
    if gold is not None:
        diff = compare_to_gold(result, gold, tools, config.memory_threshold, nested=config.nested_memory)
        if diff:
            return None, f"differs from gold: {diff}", True
    return make_record(query, routine, order, result, options), None, gold is not None


async def distill(
    scenario: Scenario | str,
    *,
    split: str = "train",
    teacher: Backend | None = None,
    out_dir: Path,
    options: DistillOptions = DEFAULT_OPTIONS,
    data_dir: Path,
    on_progress: Progress | None = None,
    queries: list[dict[str, Any]] | None = None,
    routines: Sequence[Routine] | None = None,
    servers: Mapping[str, Any] | None = None,
) -> DistillReport:
    """Distill ``split`` of ``scenario`` (or the given ``queries``) into ``out_dir``: a ShareGPT ``.jsonl``,
    ``dataset_info.json`` and a ``.report.json``. ``teacher=None`` runs the bound reference executor.
    ``routines``/``servers`` replace the scenario's (``servers``: an mcpServers config, or FastMCP objects
    by name). ``on_progress(done, total, message)`` is called once per query."""
    started = time.perf_counter()
    scen = scenario if isinstance(scenario, Scenario) else Scenario.load(scenario)
    todo = list(queries) if queries is not None else scen.queries(split)
    if options.limit is not None:
        todo = todo[: options.limit]
    extra, without = augment(todo, options.augment, seed=options.seed, templates=scenario_templates(scen))
    todo += extra
    gold = _gold(scen, split) if options.check_gold else {}
    table = routine_table(routines if routines is not None else scen.routines(), options.flatten)
    mode: Literal["model", "hybrid", "bound"] = "bound" if teacher is None else options.teacher_mode
    config = replace(options.executor_config(mode), memory_layout=scen.memory_layout)  # the scenario's layout
    records: list[dict[str, Any]] = []
    dropped: list[dict[str, str]] = []
    checked = teacher_errors = 0
    async with ToolHub.from_config(servers or scen.servers(data_dir), timeout=options.tool_timeout) as hub:
        all_tools = await hub.list_tools()
        for done, query in enumerate(todo, start=1):
            qid = str(query.get("id"))
            try:
                record, reason, was_checked = await distill_query(
                    query, hub=hub, tools=all_tools, table=table, teacher=teacher, config=config,
                    gold=gold.get(str(query.get("augmented_from") or qid)), options=options,
                )
                teacher_errors = 0
            except TeacherUnavailable as exc:  # give up when the endpoint never answers
                record, reason, was_checked = None, f"teacher error: {exc}", False
                teacher_errors += 1
                if teacher_errors >= MAX_TEACHER_ERRORS:
                    raise TeacherUnavailable(f"the teacher failed on {teacher_errors} queries in a row, the last "
                                          f"with: {exc}; check its endpoint") from exc
            checked += was_checked
            if record is not None:
                records.append(record)
            else:
                dropped.append({"id": qid, "reason": reason or "unknown"})
                log.info("dropped %s: %s", qid, reason)
            await _notify(on_progress, done, len(todo), f"{qid}: {'kept' if record is not None else 'dropped'}")
    name = options.dataset_name(scen.name, split)
    lengths = dataset_lengths(records, {r.id or r.name: r for r in table.values()}, all_tools, options.record_prompt()) \
        if options.lengths else {}
    out_path, info_path = write_dataset(records, Path(out_dir), name, tools_column=options.tools_column)
    report = DistillReport(
        scenario=scen.name, split=split, teacher=getattr(teacher, "name", "bound") if teacher else "bound",
        queries=len(todo), kept=len(records), records=len(records),
        calls=sum(sum(1 for t in r["conversations"] if t["from"] == "function_call") for r in records),
        dropped=dropped, out_path=out_path, dataset_info_path=info_path,
        report_path=Path(out_dir) / f"{name}.report.json", dataset=name, augmented=len(extra),
        without_phrasings=without if options.augment else [], gold_checked=checked,
        seconds=round(time.perf_counter() - started, 3), lengths=lengths,
    )
    report.report_path.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report
