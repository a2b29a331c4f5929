"""The executor loop (paper 3.2-3.4, design section 3): one checked tool call per step until the finish step.

Modes: ``model`` (the paper: the model makes every call), ``hybrid`` (steps whose arguments and branch
conditions are bound run without the model; the model fills only what the Routine leaves open) and
``bound`` (no model at all). The Routine is a capability boundary in every mode: a call to a tool it does
not name is refused whatever the model or a tool's output says, and never reaches the server; bound
arguments and system parameters win over the model's values (what the model wrote stays in the run log);
a branch whose ``when`` guard is false cannot be taken.

Constraint modes (``ExecutorConfig.constrain``), for backends that can constrain decoding: ``none``;
``routine``: one call to any tool listed in the prompt; ``next``: one call to a tool the Routine allows
next (the next step's tool; at a branch, the first tools of the branches whose guard is not false), with
the step's bound arguments written by the grammar.

Inputs (``{{inputs.*}}``) the caller does not pass are read from the question by the model in every mode
that has one (a model-mode run goes on without them when that fails).
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from routines.arguments import ArgumentChecker
from routines.backends.base import Backend, Constraint, Message, ToolSpec
from routines.backends.schema import pin_arguments
from routines.bindings import BindingError, RunState, is_bound, resolvable_args, resolve_args
from routines.calls import CallParseError, ToolCall, parse_tool_call
from routines.cursor import Cursor, choose_branch, open_branches
from routines.errors import CallerError, DownstreamError, ModelCallError, PromptTooLong, RunFailed
from routines.inputs import extract_inputs, missing_inputs
from routines.model import Routine, Step
from routines.prompt import build_messages, build_system_prompt, observation_text
from routines.run_config import MODES, ExecutorConfig, Mode, RunSink, ToolCaller, VariableStore, prompt_tools
from routines.trajectory import Call, StepRecord, Trajectory

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """A finished (or failed) run: its trajectory's parts, its status and every attempt."""

    run_id: str | None
    status: Literal["finished", "failed"]
    answer: str | None
    error: str | None
    error_kind: str | None
    routine_id: str | None
    calls: list[Call]
    attempts: list[StepRecord]
    inputs: dict[str, Any]
    system: dict[str, Any]
    query: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    def trajectory(self) -> Trajectory:
        """The run as one record: what evaluation samples and training records are cut from."""
        return Trajectory(query=self.query, calls=tuple(self.calls), routine_id=self.routine_id, system=self.system,
                          inputs=self.inputs, answer=self.answer)


StepCallback = Callable[[StepRecord], Awaitable[None] | None]
VariablesFactory = Callable[..., VariableStore]
"""Makes one run's variable memory: ``(threshold, nested=...)`` (``memory.variables.VariableMemory``)."""


@dataclass
class _Run:
    routine: Routine
    query: str
    state: RunState
    memory: VariableStore
    cursor: Cursor
    tools: dict[str, ToolSpec]
    prompt_tools: list[ToolSpec]
    system_prompt: str
    run_id: str | None
    calls: list[Call] = field(default_factory=list)
    attempts: list[StepRecord] = field(default_factory=list)
    answer: str | None = None
    candidates: list[Step] = field(default_factory=list)  # the steps the cursor allows now


class Executor:
    """Runs Routines against a tool hub with a model backend (``None`` is fine for ``bound`` mode).

    ``variables`` makes each run's variable memory (pass ``memory.variables.VariableMemory``); ``runlog`` records every
    run and attempt as it happens (``memory.runlog.RunLog``, optional)."""

    def __init__(
        self,
        hub: ToolCaller,
        backend: Backend | None = None,
        config: ExecutorConfig | None = None,
        runlog: RunSink | None = None,
        *,
        variables: VariablesFactory,
    ) -> None:
        self.hub = hub
        self.backend = backend
        self.config = config or ExecutorConfig()
        self.runlog = runlog
        self.variables = variables
        self._arguments = ArgumentChecker()

    # ---- public -----------------------------------------------------------------------------------
    async def run(
        self,
        routine: Routine,
        query: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        system: Mapping[str, Any] | None = None,
        mode: Mode | None = None,
        on_step: StepCallback | None = None,
    ) -> RunResult:
        """Run ``routine`` for ``query``. Model and downstream failures end the run with ``status="failed"``
        and a clear ``error`` (everything done before is in the result and the run log); problems the
        caller must fix (a Routine naming tools the hub lacks, bound mode without inputs) raise CallerError."""
        mode = mode or self.config.mode
        if mode not in MODES:
            raise CallerError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if mode != "bound" and self.backend is None:
            raise CallerError(f"mode {mode!r} needs a model backend; use mode 'bound' for fully bound Routines")
        sys_params = dict(system or {})
        if user_id is not None:
            sys_params["user_id"] = user_id
        try:
            tools = {t.name: t for t in await self.hub.list_tools()}
        except DownstreamError as exc:  # no server to run against: a failed run, logged like any other
            run_id = self._start_log(routine, query, mode, sys_params, dict(inputs or {}))
            if self.runlog is not None and run_id is not None:
                self.runlog.finish_run(run_id, status="failed", error=str(exc))
            return RunResult(run_id, "failed", None, str(exc), "downstream", routine.id, [], [], dict(inputs or {}),
                             sys_params, query)
        missing = [t for t in routine.tools() if t not in tools]
        if missing:
            raise CallerError(
                f"Routine {routine.id or routine.name!r} names tools the downstream servers do not have: "
                f"{', '.join(missing)}; connect the right servers or fix the Routine"
            )
        run_inputs = await self._complete_inputs(routine, query, dict(inputs or {}), mode)
        shown = [routine] if self.config.prompt.with_routine else []  # a hidden Routine: listed like no Routine
        listed = prompt_tools(shown, tools, self.config.tools_in_prompt)
        run_id = self._start_log(routine, query, mode, sys_params, run_inputs)
        run = _Run(
            routine=routine, query=query, state=RunState(inputs=run_inputs, system=sys_params, steps={}),
            memory=self.variables(self.config.memory_threshold, nested=self.config.nested_memory), cursor=Cursor(routine), tools=tools,
            prompt_tools=listed, system_prompt=self.system_prompt(routine, listed, sys_params), run_id=run_id,
        )
        error: str | None = None
        error_kind: str | None = None
        try:
            await self._loop(run, mode, on_step)
        except RunFailed as exc:
            error, error_kind = str(exc), (exc.result or "model")
        except DownstreamError as exc:
            error, error_kind = str(exc), "downstream"
        except (ConnectionError, PromptTooLong) as exc:  # the endpoint cannot answer; the run outgrew the context
            error, error_kind = ((f"model context: {exc}", "context") if isinstance(exc, PromptTooLong)
                                 else (f"model backend: {exc}", "backend"))
        except anyio.get_cancelled_exc_class():  # the caller went away or cancelled: not an internal error
            if self.runlog is not None and run_id is not None:
                self.runlog.finish_run(run_id, status="cancelled", answer=run.answer,
                                       error="cancelled: the client disconnected or cancelled the call")
            raise
        except BaseException as exc:  # our own bug: the log says so, then it propagates
            if self.runlog is not None and run_id is not None:
                self.runlog.finish_run(run_id, status="failed", answer=run.answer,
                                       error=f"internal error: {type(exc).__name__}: {exc}")
            raise
        status: Literal["finished", "failed"] = "finished" if error is None else "failed"
        if self.runlog is not None and run_id is not None:
            self.runlog.finish_run(run_id, status=status, answer=run.answer, error=error)
        return RunResult(
            run_id=run_id, status=status, answer=run.answer, error=error, error_kind=error_kind,
            routine_id=routine.id, calls=run.calls, attempts=run.attempts, inputs=run_inputs, system=sys_params,
            query=query,
        )

    def _start_log(
        self, routine: Routine, query: str, mode: str, system: dict[str, Any], inputs: dict[str, Any]
    ) -> str | None:
        if self.runlog is None:
            return None
        return self.runlog.start_run(
            query=query, mode=mode, routine_id=routine.id, routine_version=routine.version,
            backend=getattr(self.backend, "name", None) if mode != "bound" else "none",
            user_id=system.get("user_id"), inputs=inputs, system=system,
        )

    def system_prompt(self, routine: Routine, tools: list[ToolSpec], system: Mapping[str, Any]) -> str:
        """The run's system prompt: built once, the same at every step (the conversation is append-only)."""
        return build_system_prompt(routines=[routine], tools=tools, system=system, options=self.config.prompt)

    # ---- the loop ---------------------------------------------------------------------------------
    async def _loop(self, run: _Run, mode: Mode, on_step: StepCallback | None) -> None:
        for _ in range(self.config.max_steps):
            candidates = run.candidates = run.cursor.candidates()
            if not candidates:
                return
            target = self._planned_step(run, candidates, mode)
            resolved = self._resolve_bound(run, target, mode) if target is not None and mode != "model" else None
            if target is not None and resolved is not None:
                await self._bound_call(run, target, resolved, on_step)
            elif mode == "bound":
                label = target.step if target else "/".join(c.step for c in candidates)
                reason = "is not fully bound" if target else "has a branch no 'when' condition decides"
                raise RunFailed(f"bound mode: step {label} {reason}; use hybrid or model mode", "binding")
            else:
                allowed = [target] if target is not None and mode == "hybrid" else open_branches(candidates, run.state)
                await self._model_call(run, allowed, on_step)
            if run.cursor.finished:
                return
        raise RunFailed(f"the run did not finish within {self.config.max_steps} steps", "model")

    def _planned_step(self, run: _Run, candidates: list[Step], mode: Mode) -> Step | None:
        if len(candidates) == 1:
            return candidates[0]
        if mode == "model":
            return None
        return choose_branch(candidates, run.state)

    def _bound(self, run: _Run, step: Step) -> bool:
        spec = run.tools.get(step.tool or "")
        return is_bound(step, spec.parameters if spec else None)

    async def _complete_inputs(self, routine: Routine, query: str, inputs: dict[str, Any], mode: Mode) -> dict[str, Any]:
        """The caller's inputs plus what the model reads from the question (a model-mode run whose reading
        fails goes on without: the model writes those values itself)."""
        missing = missing_inputs(routine, inputs)
        if not missing or (mode == "model" and not self.config.extract_inputs):
            return inputs
        if mode == "bound" or self.backend is None:
            raise CallerError(f"bound mode needs the Routine's inputs: {', '.join(missing)}; pass them as inputs")
        return await extract_inputs(routine, query, inputs, self.backend, required=mode != "model",
                                    today=self.config.reference_date)

    # ---- a step without the model -----------------------------------------------------------------
    def _resolve_bound(self, run: _Run, step: Step, mode: Mode) -> dict[str, Any] | None:
        """The step's arguments when it can run without the model, else None. A binding that names
        something the run lacks fails a bound run; a hybrid run leaves that step to the model."""
        if not self._bound(run, step):
            return None
        try:
            return resolve_args(step.args, run.state)
        except BindingError as exc:
            if mode == "bound":
                raise RunFailed(f"step {step.step}: {exc}", "binding") from exc
            log.info("step %s: %s; the model fills it", step.step, exc)
            return None

    async def _bound_call(self, run: _Run, step: Step, resolved: dict[str, Any], on_step: StepCallback | None) -> None:
        arguments = run.memory.encode_args(resolved)
        rec = StepRecord(step=step.step, source="bound", tool=step.tool, arguments=arguments, resolved_arguments=resolved)
        await self._execute(run, step, ToolCall(step.tool or "", arguments), resolved, rec, on_step, retry=False)

    # ---- a step the model makes -------------------------------------------------------------------
    def _constraint(self, run: _Run, allowed: list[Step]) -> Constraint | None:
        """``routine``: any listed tool. ``next``: the tools of the allowed steps, each step's bound arguments
        written by the grammar (they would overwrite the model's values anyway; a tool two allowed steps
        share is left unpinned)."""
        if self.config.constrain == "routine":
            return Constraint(tools=tuple(run.prompt_tools))
        if self.config.constrain == "next":
            by_tool = {s.tool: [t for t in allowed if t.tool == s.tool] for s in allowed if s.tool in run.tools}
            return Constraint(tools=tuple(
                pin_arguments(run.tools[name], self._bound_values(run, steps[0])) if len(steps) == 1 else run.tools[name]
                for name, steps in by_tool.items() if name))
        return None

    async def _model_call(self, run: _Run, allowed: list[Step], on_step: StepCallback | None) -> None:
        assert self.backend is not None
        base = build_messages(run.system_prompt, run.query, run.calls)
        feedback: list[Message] = []
        constraint = self._constraint(run, allowed)
        for attempt in range(self.config.max_retries + 1):
            messages = base + feedback
            completion = await self.backend.complete(messages, constraint=constraint, max_tokens=self.config.max_tokens)
            rec = StepRecord(
                step=None, source="model", attempt=attempt, raw_output=completion.text,
                prompt_chars=sum(len(m.content) for m in messages), prompt_tokens=completion.prompt_tokens,
                output_tokens=completion.output_tokens, model_latency_s=completion.latency_s,
            )
            try:
                call = parse_tool_call(completion.text)
                step = self._match(run, call, allowed)
                rec.step, rec.tool, rec.arguments = step.step, call.name, call.arguments
                if step.args:  # the Routine's bindings win over the model's values, in every mode
                    bound_call = ToolCall(call.name, {**call.arguments, **self._bound_values(run, step)})
                    if bound_call.arguments != call.arguments:
                        rec.extra["model_arguments"] = call.arguments
                    call, rec.arguments = bound_call, bound_call.arguments
                resolved = self._check_arguments(run, call)
                rec.resolved_arguments = resolved
                if await self._execute(run, step, call, resolved, rec, on_step, retry=attempt < self.config.max_retries):
                    return
                feedback += [Message("assistant", call.text()), Message("tool", f"error: {rec.error}")]
            except (CallParseError, ModelCallError) as exc:
                rec.error, rec.error_kind = str(exc), "model"
                rec.extra["kind"] = getattr(exc, "kind", "")
                await self._record(run, rec, on_step)
                expected = " or ".join(f"step {s.step} ({s.tool})" for s in allowed)
                feedback += [
                    Message("assistant", completion.text),
                    Message("user", f"Your reply was not accepted: {exc}. Reply with exactly one tool call for {expected}."),
                ]
        last = run.attempts[-1].error if run.attempts else "no answer"
        raise RunFailed(f"the model made no acceptable call after {self.config.max_retries + 1} tries: {last}", "model")

    def _match(self, run: _Run, call: ToolCall, allowed: list[Step]) -> Step:
        matches = [s for s in allowed if s.tool == call.name]
        if len(matches) > 1:
            return choose_branch(matches, run.state) or matches[0]
        if matches:
            return matches[0]
        expected = ", ".join(f"{s.tool} (step {s.step})" for s in allowed)
        closed = [s for s in run.cursor.candidates() if s.tool == call.name and s not in allowed]
        if closed:
            raise ModelCallError("guard_false", f"step {closed[0].step} ({call.name}) is a branch whose condition "
                                 f"does not hold; the next call is {expected}")
        if call.name in run.routine.tools():
            raise ModelCallError("out_of_order", f"{call.name} is not the next step of the Routine; the next call is {expected}")
        if call.name in run.tools:
            raise ModelCallError("not_in_routine", f"the Routine does not use {call.name}; the next call is {expected}")
        raise ModelCallError("unknown_tool", f"there is no tool {call.name!r}; the next call is {expected}")

    def _bound_values(self, run: _Run, step: Step) -> dict[str, Any]:
        """The step's arguments the run can already resolve, written as a call writes them (long values and
        whole results as memory keys). They win over the model's values in every mode."""
        return run.memory.encode_args(resolvable_args(step.args, run.state))

    def _check_arguments(self, run: _Run, call: ToolCall) -> dict[str, Any]:
        return self._arguments.check(call, run.tools[call.name], run.memory)

    # ---- calling the tool and recording -----------------------------------------------------------
    async def _execute(
        self, run: _Run, step: Step, call: ToolCall, resolved: dict[str, Any], rec: StepRecord,
        on_step: StepCallback | None, retry: bool,
    ) -> bool:
        """Call the tool; True when the step is done, False when a tool error was fed back for a retry."""
        rec.next_tools = tuple(dict.fromkeys(s.tool for s in run.candidates if s.tool))
        started = time.perf_counter()
        try:
            result = await self.hub.call(call.name, resolved, timeout=self.config.tool_timeout)
        except DownstreamError as exc:
            rec.error, rec.error_kind = str(exc), "downstream"
            rec.tool_latency_s = time.perf_counter() - started
            await self._record(run, rec, on_step)
            raise
        rec.tool_latency_s = result.latency_s
        if result.is_error:
            rec.error, rec.error_kind, rec.result = result.text or "the tool failed", "tool", result.text
            await self._record(run, rec, on_step)
            if rec.source == "model" and retry:
                return False
            raise RunFailed(f"step {step.step}: tool {call.name} failed: {rec.error}", "tool")
        value = result.value
        seen = run.memory.observe(value, hint=call.name)
        rec.result, rec.observation = value, observation_text(seen.key, seen.shown, seen.new_keys)
        run.state.steps[step.step] = value
        alias = run.cursor.branch_point(step)
        if alias:
            run.state.steps[alias] = value
        run.cursor.advance(step)
        run.calls.append(Call.from_attempt(rec))
        if step.type == "finish" or run.cursor.finished:
            run.answer = _answer_of(value)
        await self._record(run, rec, on_step)
        return True

    async def _record(self, run: _Run, rec: StepRecord, on_step: StepCallback | None) -> None:
        run.attempts.append(rec)
        if self.runlog is not None and run.run_id is not None:
            self.runlog.log_step(run.run_id, rec)
        if on_step is not None:
            out = on_step(rec)
            if inspect.isawaitable(out):
                await out


def _answer_of(value: Any) -> str:
    if isinstance(value, Mapping):
        for key in ("answer", "summary", "text", "result"):
            if isinstance(value.get(key), str):
                return value[key]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

