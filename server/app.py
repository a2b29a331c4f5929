"""The FastMCP app: the four Routine tools an agent calls, plus Routine management, resources and the
planning prompt. Everything it does is in ``RoutineService``; this module is the MCP face of it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastmcp import Context, FastMCP
from fastmcp.exceptions import PromptError, ToolError
from mcp.types import InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from routines.backends.base import Backend
from routines.errors import CallerError
from routines.planner import planning_prompt
from routines.render import render_routine
from routines.trajectory import StepRecord
from server import __version__
from server.errors import ErrorMapping
from server.input_required import InputRequiredBridge, Reporter
from server.messages import ReadableValidationErrors
from server.sampling import with_client_model
from server.security import SCOPE_DATASETS, SCOPE_WRITE, Caller
from server.service import RoutineService, tool_specs
from server.settings import Settings

log = logging.getLogger(__name__)

INSTRUCTIONS = """This server carries out business procedures (Routines) reliably.
- run_routine(query): answers a request by running the best stored Routine against the company's tools,
  one checked tool call per step; returns the answer and every step taken.
- retrieve_routine(query): which stored Routine fits a request, with its score.
- plan_routine(draft): turns an expert's rough procedure into a structured Routine (save=true stores it).
- distill_dataset(...): runs a scenario's queries with their Routines to make fine-tuning data.
Routines: list_routines, get_routine, save_routine, delete_routine; resource routine://{id}."""


# ---- structured outputs --------------------------------------------------------------------------------
class Finding(BaseModel):
    severity: str
    code: str
    step: str | None
    message: str


class RoutineOut(BaseModel):
    id: str
    version: int | None
    name: str
    description: str
    text: str = Field(description="The Routine in the natural-language form the executor reads.")
    routine: dict[str, Any] = Field(description="The Routine as JSON.")


class CandidateOut(BaseModel):
    routine_id: str
    name: str
    score: float


class RetrieveOut(BaseModel):
    routine: RoutineOut | None = Field(description="The best Routine, or null when retrieval abstained.")
    score: float
    abstained: bool
    candidates: list[CandidateOut]
    explanation: str


class StepOut(BaseModel):
    step: str
    tool: str
    arguments: dict[str, Any]
    observation: str
    source: str = Field(description="'model' when the executor model made the call, 'bound' when the Routine did.")
    model_arguments: dict[str, Any] | None = Field(
        None, description="What the model wrote, where the Routine's bound values replaced some of it.")


class RunOut(BaseModel):
    run_id: str | None
    status: str
    answer: str | None
    routine_id: str | None
    routine_version: int | None
    retrieval_score: float | None
    steps: list[StepOut]
    retries: int = Field(description="Calls the engine refused and the model made again.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The Routine inputs the run used "
                                   "(given by the caller or read from the query by the model).")


class PlanOut(BaseModel):
    ok: bool
    routine: dict[str, Any] | None
    text: str
    findings: list[Finding]
    attempts: int
    saved: RoutineOut | None


class RoutineInfoOut(BaseModel):
    id: str
    name: str
    version: int
    description: str


class DistillOut(BaseModel):
    kept: int
    dropped: list[dict[str, Any]]
    out_path: str
    dataset_info_path: str | None


def routine_out(routine: Any) -> RoutineOut:
    return RoutineOut(
        id=routine.id or "", version=routine.version, name=routine.name, description=routine.description,
        text=render_routine(routine), routine=routine.model_dump(exclude_none=True),
    )


# ---- the app -------------------------------------------------------------------------------------------
def create_app(service: RoutineService | None = None, *, settings: Settings | None = None, auth: Any = None) -> FastMCP:
    svc = service or RoutineService(settings)
    bridge = InputRequiredBridge(timeout=svc.settings.sampling_timeout)

    @asynccontextmanager
    async def lifespan(server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await bridge.aclose()  # runs still waiting for a client's model end with the server

    mcp = FastMCP("routine-mcp", version=__version__, instructions=INSTRUCTIONS, auth=auth, lifespan=lifespan,
                  middleware=[ErrorMapping(), ReadableValidationErrors()])
    read_only = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> JSONResponse:  # no data behind it: safe without auth
        return JSONResponse({"status": "ok"})

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=True))
    async def run_routine(
        query: Annotated[str, Field(description="The user's request, in their words.", min_length=1)],
        ctx: Context,
        routine_id: Annotated[str | None, Field(description="Run this stored Routine (id or id@version); "
                                                "omit to pick the best one for the query.")] = None,
        inputs: Annotated[dict[str, Any] | None, Field(description="Values for the Routine's declared inputs; "
                                                       "missing ones are read from the query.")] = None,
        user_id: Annotated[str | None, Field(description="The current user's id (permissions are checked "
                                              "for this user). On HTTP the user comes from the token; another "
                                              "user only with the 'users:act-as' scope.")] = None,
        mode: Annotated[Literal["model", "hybrid", "bound"] | None, Field(description="model: the executor "
                        "model makes every call; hybrid: bound steps run without it; bound: no model.")] = None,
    ) -> RunOut | InputRequiredResult:
        """Answer a request by carrying out a Routine step by step against the company's tools.
        Returns the answer and the trajectory (every call and what it returned)."""
        run_mode = svc.settings.run_mode(mode)
        acting_user = Caller.current().run_as(user_id)  # identity from the credentials, never a free argument

        async def work(model: Backend | None, report: Reporter) -> RunOut:
            done = 0

            async def progress(rec: StepRecord) -> None:
                nonlocal done
                if rec.ok:
                    done += 1
                    await report(done, None, f"step {rec.step}: {rec.tool}")
                else:  # between this step and the next: progress must keep increasing
                    share = (rec.attempt + 1) / (svc.settings.max_retries + 2)
                    await report(done + share, None, f"step {rec.step or '?'} retried: {rec.error}")

            result, routine, found = await svc.run(
                query, routine_id=routine_id, inputs=inputs, user_id=acting_user, mode=mode, on_step=progress,
                sampling=model,
            )
            if not result.ok:
                done_steps = ", ".join(f"{c.step} {c.tool}" for c in result.calls) or "none"
                raise ToolError(f"run {result.run_id} of {routine.id} failed: {result.error} (steps done: {done_steps})")
            return RunOut(
                run_id=result.run_id, status=result.status, answer=result.answer, routine_id=routine.id,
                routine_version=routine.version, retrieval_score=found.score if found else None,
                steps=[StepOut(step=c.step, tool=c.tool, arguments=c.arguments, observation=c.observation,
                               source=c.source, model_arguments=c.model_arguments)
                       for c in result.calls],
                retries=sum(1 for a in result.attempts if not a.ok), inputs=result.inputs,
            )

        needed = svc.uses_client_model("executor") and run_mode != "bound"
        return await with_client_model(ctx, bridge, "run_routine", work, needed=needed)

    @mcp.tool(annotations=read_only)
    async def retrieve_routine(
        query: Annotated[str, Field(description="The user's request.", min_length=1)],
        k: Annotated[int, Field(description="How many candidates to list.", ge=1, le=20)] = 1,
    ) -> RetrieveOut:
        """Find the stored Routine that fits a request. Abstains (routine null) when none fits well enough,
        listing the closest candidates so the caller can choose."""
        found = svc.retrieve(query, k=k)
        return RetrieveOut(
            routine=routine_out(found.routine) if found.routine else None, score=found.score,
            abstained=found.abstained, explanation=found.explain(),
            candidates=[CandidateOut(routine_id=c.routine_id, name=c.name, score=c.score) for c in found.candidates],
        )

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=True))
    async def plan_routine(
        draft: Annotated[str, Field(description="The expert's rough procedure, in prose or a list.", min_length=1)],
        ctx: Context,
        tools: Annotated[list[dict[str, Any]] | None, Field(description="Tool schemas to plan with (MCP "
                         "tools/list entries); omit to use the downstream servers' tools.")] = None,
        save: Annotated[bool, Field(description="Store the Routine when it is valid.")] = False,
        bind: Annotated[bool, Field(description="Also bind arguments so steps can run without the model.")] = False,
    ) -> PlanOut | InputRequiredResult:
        """Turn a rough draft into a structured, validated Routine with one tool per step."""
        if save:
            Caller.current().require(SCOPE_WRITE, "plan_routine with save=true")

        async def work(model: Backend | None, report: Reporter) -> PlanOut:
            result = await svc.plan(draft, tools, bind=bind, sampling=model)
            saved = None
            if save and result.ok and result.routine is not None:
                saved = routine_out(await svc.save(result.routine, tools=tools))
            return PlanOut(
                ok=result.ok, routine=result.routine.model_dump(exclude_none=True) if result.routine else None,
                text=result.text, findings=[Finding(**f.__dict__) for f in result.report.findings],
                attempts=len(result.attempts), saved=saved,
            )

        return await with_client_model(ctx, bridge, "plan_routine", work, needed=svc.uses_client_model("planner"))

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=True))
    async def distill_dataset(
        ctx: Context,
        scenario: Annotated[str, Field(description="A scenario name: built-in (hr) or registered by the "
                            "server's operator (ROUTINE_SCENARIO_DIRS); paths are not accepted.")] = "hr",
        split: Annotated[Literal["train", "test"], Field(description="Which query set.")] = "train",
        teacher: Annotated[Literal["bound", "executor", "openai"], Field(description="'bound' (the Routines' "
                           "bindings, no model), 'executor' (the configured executor backend) or 'openai' (the "
                           "planner's large model at the OpenAI-compatible endpoint).")] = "bound",
        with_routine: Annotated[bool, Field(description="Put the Routine in the system prompt (false: "
                                            "the 'internalised' variant).")] = True,
        limit: Annotated[int | None, Field(description="Only the first N queries.", ge=1)] = None,
        out_dir: Annotated[str | None, Field(description="A folder name under the server's datasets folder "
                           "(default <scenario>-<split>).")] = None,
        tools_in_prompt: Annotated[Literal["routine", "all"] | None, Field(description="Tools the records' prompts "
                                   "list: 'routine' (the Routine's own) or 'all' (every downstream tool, the paper's "
                                   "dataset); default: the server's setting.")] = None,
    ) -> DistillOut:
        """Run a scenario's queries through their Routines and write LLaMA-Factory ShareGPT training data."""
        Caller.current().require(SCOPE_DATASETS, "distill_dataset")

        async def progress(done: int, total: int, message: str = "") -> None:
            await ctx.report_progress(done, total, message)

        report = await svc.distill(scenario=scenario, split=split, teacher=teacher, with_routine=with_routine,
                                   limit=limit, out_dir=out_dir, on_progress=progress, tools_in_prompt=tools_in_prompt)
        return DistillOut(kept=report.kept, dropped=list(report.dropped), out_path=str(report.out_path),
                          dataset_info_path=str(report.dataset_info_path) if report.dataset_info_path else None)

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False))
    async def save_routine(
        routine: Annotated[dict[str, Any], Field(description="A Routine as JSON (design section 4.1).")],
    ) -> RoutineOut:
        """Validate a Routine against the downstream tools and store it as a new version."""
        Caller.current().require(SCOPE_WRITE, "save_routine")
        return routine_out(await svc.save(routine))

    @mcp.tool(annotations=read_only)
    async def get_routine(
        routine_id: Annotated[str, Field(description="The Routine's id.")],
        version: Annotated[int | None, Field(description="A version; omit for the latest.")] = None,
    ) -> RoutineOut:
        """A stored Routine, as JSON and in natural language."""
        return routine_out(svc.store.get(routine_id, version))

    @mcp.tool(annotations=read_only)
    async def list_routines() -> list[RoutineInfoOut]:
        """All stored Routines (latest versions)."""
        return [RoutineInfoOut(id=i.id, name=i.name, version=i.version, description=i.description)
                for i in svc.store.list()]

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True))
    async def delete_routine(routine_id: Annotated[str, Field(description="The Routine's id.")]) -> dict[str, Any]:
        """Delete a Routine and all its versions."""
        Caller.current().require(SCOPE_WRITE, "delete_routine")
        removed = svc.store.delete(routine_id)
        return {"deleted": routine_id, "versions": removed}

    @mcp.resource("routine://{routine_id}", mime_type="application/json")
    async def routine_resource(routine_id: str) -> dict[str, Any]:
        """A stored Routine as JSON."""
        return svc.store.get(routine_id).model_dump(exclude_none=True)

    @mcp.resource("routine://{routine_id}/text", mime_type="text/plain")
    async def routine_text_resource(routine_id: str) -> str:
        """A stored Routine in the natural-language form the executor reads."""
        return render_routine(svc.store.get(routine_id))

    @mcp.prompt(name="plan_routine")
    async def plan_prompt(
        draft: Annotated[str, Field(description="The expert's rough procedure.")],
        tools: Annotated[str | None, Field(description="Tool schemas as a JSON list (MCP tools/list entries); "
                                           "omit to use the downstream servers' tools.")] = None,
    ) -> str:
        """The prompt that turns a rough draft into a structured Routine (paper appendix A.1)."""
        if not draft.strip():  # checked here: a prompt's string arguments fail pydantic's checks as "Invalid JSON"
            raise PromptError("draft is empty: give the expert's rough procedure, in prose or a list")
        try:
            given = json.loads(tools) if tools and tools.strip() else None
        except json.JSONDecodeError as exc:
            raise CallerError(f"tools is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        if given is not None and not isinstance(given, list):
            raise CallerError("tools must be a JSON list of tool schemas")
        specs = tool_specs(given) if given else await svc.tools()
        return planning_prompt(draft, specs)

    mcp.service = svc  # type: ignore[attr-defined]
    mcp.bridge = bridge  # type: ignore[attr-defined]
    return mcp
