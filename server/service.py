"""``RoutineService``: what the MCP tools do, free of MCP: the Routine store, retrieval, the downstream hub,
the executor and its backend, planning and distillation, wired from one ``Settings``.

Heavy parts (the embedding model, the embedded executor, downstream connections) start on first use, so
``routine serve`` answers ``tools/list`` at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import anyio

from memory.retrieval import RetrievalResult, Retriever
from memory.runlog import RunLog
from memory.store import ProcedureStore
from memory.variables import VariableMemory
from routines.backends.base import Backend, ToolSpec
from routines.errors import CallerError
from routines.executor import Executor, ExecutorConfig, RunResult, StepCallback
from routines.hub import ToolHub, load_servers_config
from routines.model import Routine
from routines.planner import Planner, PlanResult
from server.limits import check_routine_data, check_routine_text, check_text, dataset_dir, named_scenario
from server.settings import Settings

log = logging.getLogger(__name__)

_UNSET: Any = object()


def tool_specs(tools: list[Any]) -> list[ToolSpec]:
    """Caller-given tool schemas (MCP ``tools/list`` entries or ``{name, parameters}``) as ToolSpecs."""
    specs = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise CallerError(f"tools[{i}] is not a tool: give objects with a 'name' and an 'inputSchema' "
                              "(as MCP tools/list returns them)")
        schema = tool.get("inputSchema", tool.get("parameters", {}))
        if not isinstance(schema, dict):
            raise CallerError(f"tools[{i}] ({tool['name']}): the input schema must be a JSON-schema object")
        specs.append(ToolSpec.from_mcp(tool))
    return specs


class RoutineService:
    """One per server process. Pass ``hub``/``executor_backend``/``planner_backend``/``embedder`` to
    replace what settings would build (tests, embedding the server in another program)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        hub: ToolHub | None = None,
        executor_backend: Backend | None = _UNSET,
        planner_backend: Backend | None = None,
        embedder: Any = None,
    ) -> None:
        self.settings = settings or Settings()
        self.store = ProcedureStore(self.settings.store_path)
        self.runlog = RunLog(self.settings.runlog_path)
        self._hub = hub
        self._executor_backend = executor_backend
        self._planner_backend = planner_backend
        self._embedder = embedder
        self._retriever: Retriever | None = None
        self._retriever_revision = -1

    async def aclose(self) -> None:
        if self._hub is not None:
            await self._hub.aclose()
        for backend in (self._executor_backend, self._planner_backend):
            if backend is not None and backend is not _UNSET and hasattr(backend, "aclose"):
                await backend.aclose()

    # ---- parts ------------------------------------------------------------------------------------
    def hub(self) -> ToolHub:
        if self._hub is None:
            if self.settings.servers_file is None:
                raise CallerError("no downstream servers are configured; set ROUTINE_SERVERS_FILE to an mcpServers JSON file")
            self._hub = ToolHub(load_servers_config(self.settings.servers_file), timeout=self.settings.tool_timeout)
        return self._hub

    async def tools(self) -> list[ToolSpec]:
        return await self.hub().list_tools()

    def retriever(self) -> Retriever:
        """The retriever, with the store's newest tuned embedding adapter (checked whenever the store changed, so
        ``routine routines tune`` on a running server's store takes effect at the next retrieval)."""
        revision = self.store.revision
        if self._retriever is None or (self._embedder is None and revision != self._retriever_revision):
            from memory.tuning import embedder_for

            embedder = self._embedder or embedder_for(self.store, self.settings.embedding_model)
            if self._retriever is None or self._retriever.embedder.name != embedder.name:
                kwargs = {} if self.settings.retrieval_threshold is None else {"threshold": self.settings.retrieval_threshold}
                self._retriever = Retriever(self.store, embedder, **kwargs)
            self._retriever_revision = revision
        return self._retriever

    def executor_backend(self, sampling: Backend | None = None) -> Backend | None:
        """The configured executor model. ``sampling``: the per-request backend for ``sampling``."""
        if self.settings.executor_backend == "sampling":
            if sampling is None:
                raise CallerError("the sampling executor needs an MCP client connection")
            return sampling
        if self._executor_backend is _UNSET:
            s = self.settings
            if s.executor_backend == "openai" and not s.model:
                raise CallerError("ROUTINE_EXECUTOR_BACKEND=openai needs ROUTINE_MODEL (the model or LoRA adapter name)")
            self._executor_backend = s.backend(s.executor_backend)
        return self._executor_backend

    def uses_client_model(self, part: Literal["executor", "planner"]) -> bool:
        """True when ``part`` is configured as the MCP client's own model (``sampling``)."""
        if part == "executor":
            return self.settings.executor_backend == "sampling"
        return self._planner_backend is None and self.settings.planner_backend == "sampling"

    def planner_backend(self, sampling: Backend | None = None) -> Backend:
        if self._planner_backend is not None:
            return self._planner_backend
        s = self.settings
        if s.planner_backend == "sampling":
            if sampling is None:
                raise CallerError("the sampling planner needs an MCP client connection")
            return sampling
        if s.planner_backend == "openai" and not (s.planner_model or s.model):
            raise CallerError("planning needs a model: set ROUTINE_PLANNER_MODEL (and ROUTINE_PLANNER_ENDPOINT), "
                              "or ROUTINE_PLANNER_BACKEND=sampling to use the client's model")
        self._planner_backend = s.planner()
        assert self._planner_backend is not None
        return self._planner_backend

    def teacher_backend(self, teacher: str) -> Backend | None:
        """The distillation teacher: ``bound`` (no model), ``executor`` (the executor backend) or ``openai``
        (the planner's large model behind the OpenAI-compatible endpoint)."""
        if teacher == "bound":
            return None
        if teacher == "executor":
            if self.settings.executor_backend == "sampling":
                raise CallerError("teacher 'executor' cannot use the client's model (sampling) for a whole dataset; "
                                  "use teacher 'openai' or 'bound', or configure a local or openai executor")
            backend = self.executor_backend()
            if backend is None:
                raise CallerError("teacher 'executor' needs an executor model, and ROUTINE_EXECUTOR_BACKEND is 'none'; "
                                  "use teacher 'bound' or configure a backend")
            return backend
        if teacher == "openai":
            s = self.settings
            model = s.planner_model or s.model
            if not model:
                raise CallerError("teacher 'openai' needs a model: set ROUTINE_PLANNER_MODEL (or ROUTINE_MODEL) and "
                                  "ROUTINE_PLANNER_ENDPOINT (or ROUTINE_ENDPOINT)")
            return s.backend("openai", model=model, base_url=s.planner_endpoint)
        raise CallerError(f"unknown teacher {teacher!r}; use 'bound', 'executor' or 'openai'")

    # ---- operations -------------------------------------------------------------------------------
    async def save(
        self, data: Routine | dict[str, Any], *, tools: list[dict[str, Any]] | None = None, check_tools: bool = True
    ) -> Routine:
        """Validate and store a new version: against ``tools`` when given, else against the downstream tools
        when servers are configured."""
        check_routine_data(data, self.settings)
        if tools:
            specs: list[ToolSpec] = tool_specs(tools)
        else:
            specs = await self.tools() if check_tools and (self._hub or self.settings.servers_file) else []
        # Parsing and validating a caller's Routine runs in a worker thread: other requests go on meanwhile.
        routine = await anyio.to_thread.run_sync(self._prepare, data, specs)
        return self.store.save_prepared(routine)

    def _prepare(self, data: Routine | dict[str, Any], specs: list[ToolSpec]) -> Routine:
        routine = self.store.prepare(data, tools=specs)
        check_routine_text(routine, self.settings)
        return routine

    def retrieve(self, query: str, k: int = 1) -> RetrievalResult:
        check_text("the query", query, self.settings.max_query_chars, "ROUTINE_MAX_QUERY_CHARS")
        return self.retriever().retrieve(query, k=k)

    def resolve_routine(self, query: str, routine_id: str | None) -> tuple[Routine, RetrievalResult | None]:
        if routine_id:
            name, _, version = routine_id.partition("@")
            if version and not version.isdigit():
                raise CallerError(f"routine_id {routine_id!r}: after '@' comes a version number, e.g. {name}@2")
            return self.store.get(name, int(version) if version else None), None
        found = self.retrieve(query)
        if found.routine is None:
            raise CallerError(found.explain())
        return found.routine, found

    async def run(
        self,
        query: str,
        *,
        routine_id: str | None = None,
        inputs: dict[str, Any] | None = None,
        user_id: str | None = None,
        mode: str | None = None,
        on_step: StepCallback | None = None,
        sampling: Backend | None = None,
    ) -> tuple[RunResult, Routine, RetrievalResult | None]:
        check_text("the query", query, self.settings.max_query_chars, "ROUTINE_MAX_QUERY_CHARS")
        run_mode = self.settings.run_mode(mode)
        backend = None if run_mode == "bound" else self.executor_backend(sampling)
        if backend is None and run_mode != "bound":  # refused before any retrieval or downstream work
            raise CallerError(f"mode {run_mode!r} needs an executor model, and ROUTINE_EXECUTOR_BACKEND is 'none'; "
                              "use mode 'bound' or configure a backend")
        routine, found = self.resolve_routine(query, routine_id)
        s = self.settings
        config = ExecutorConfig(
            mode=run_mode, constrain=s.constrain, tools_in_prompt=s.tools_in_prompt,
            memory_threshold=s.memory_threshold, memory_layout=s.memory_layout, max_steps=s.max_steps,
            max_retries=s.max_retries, tool_timeout=s.tool_timeout, extract_inputs=s.extract_inputs, today=s.today,
        )
        executor = Executor(self.hub(), backend, config, self.runlog, variables=VariableMemory)
        result = await executor.run(routine, query, inputs=inputs, user_id=user_id, on_step=on_step)
        if result.ok and found is None and self.settings.learn_from_runs and routine.id:
            self.learn(query, routine.id)  # the caller named the Routine: a label, not retrieval's own guess
        return result, routine, found

    def learn(self, query: str, routine_id: str) -> None:
        """Keep a question that a Routine served as one of its example questions (source ``runs``)."""
        from memory.errors import InvalidExampleError

        try:
            self.store.add_examples([(routine_id, query)], source="runs")
        except InvalidExampleError as exc:  # the Routine was deleted meanwhile
            log.info("not learning from the run: %s", exc)

    async def plan(self, draft: str, tools: list[dict[str, Any]] | None, *, bind: bool = False,
                   sampling: Backend | None = None) -> PlanResult:
        check_text("the draft", draft, self.settings.max_draft_chars, "ROUTINE_MAX_DRAFT_CHARS")
        specs = tool_specs(tools) if tools else await self.tools()
        planner = Planner(self.planner_backend(sampling), bind=bind)
        return await planner.plan(draft, specs)

    async def distill(self, *, scenario: str, split: str, teacher: str, with_routine: bool, limit: int | None,
                      out_dir: str | None, on_progress: Callable[..., Any] | None = None,
                      tools_in_prompt: str | None = None) -> Any:
        from trainer.distill import DistillOptions, distill

        scen = named_scenario(scenario, self.settings)  # a name, never a path: see docs/security.md
        out = dataset_dir(out_dir, f"{scen.name}-{split}", self.settings)
        teacher_backend = self.teacher_backend(teacher)
        return await distill(
            scen, split=split, teacher=teacher_backend, out_dir=out,
            options=DistillOptions(with_routine=with_routine, limit=limit, memory_threshold=self.settings.memory_threshold,
                                   tools_in_prompt=tools_in_prompt or self.settings.tools_in_prompt),
            data_dir=self.settings.home, on_progress=on_progress,
        )
