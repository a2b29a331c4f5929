"""``routine run`` and ``routine runs list|show``: run a Routine from the command line, read the run log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from memory.runlog import RunLog
from memory.variables import VariableMemory
from routines.executor import Executor, ExecutorConfig
from routines.hub import ToolHub
from routines.model import Routine
from routines.run_config import MODES
from routines.trajectory import StepRecord
from server.settings import Settings


def load_routine(spec: str, settings: Settings) -> Routine:
    """A Routine from a JSON file path, or by id (``id`` or ``id@version``) from the Routine store."""
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return Routine.from_file(path)
    from memory.store import ProcedureStore

    routine_id, _, version = spec.partition("@")
    store = ProcedureStore(settings.store_path)
    return store.get(routine_id, int(version) if version else None)


def backend_from_options(kind: str | None, settings: Settings, **options: Any) -> Any:
    kind = kind or settings.executor_backend
    if kind == "sampling":
        raise typer.BadParameter("the sampling backend exists only inside `routine serve` (it is the MCP client's model)")
    return settings.backend(kind, **options)


def print_step(rec: StepRecord) -> None:
    if rec.error and rec.tool is None:
        typer.echo(f"  ! step {rec.step or '?'} (try {rec.attempt + 1}): {rec.error}")
        return
    args = json.dumps(rec.arguments, ensure_ascii=False)
    if len(args) > 160:
        args = args[:157] + "..."
    origin = "bound" if rec.source == "bound" else f"model {rec.model_latency_s:.1f}s"
    typer.echo(f"  step {rec.step} [{origin}] {rec.tool}({args})")
    if rec.error:
        typer.echo(f"    ! {rec.error_kind} error: {rec.error}")


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        query: Annotated[str, typer.Option("--query", "-q", help="The user's question.")],
        routine: Annotated[str, typer.Option("--routine", "-r", help="A Routine JSON file, or a stored id[@version].")],
        servers: Annotated[Path | None, typer.Option(help="Downstream servers (mcpServers JSON).")] = None,
        user_id: Annotated[str | None, typer.Option("--user-id", help="The current user id (a system parameter).")] = None,
        inputs: Annotated[str | None, typer.Option(help="The Routine's inputs as a JSON object.")] = None,
        mode: Annotated[str | None, typer.Option(help=f"One of {', '.join(MODES)}.")] = None,
        backend: Annotated[str | None, typer.Option(help="local, openai, scripted or none.")] = None,
        model: Annotated[str | None, typer.Option(help="Model / LoRA adapter name, or local model directory.")] = None,
        base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint URL.")] = None,
        adapter: Annotated[str | None, typer.Option(help="LoRA adapter directory (local backend).")] = None,
        constrain: Annotated[str | None, typer.Option(
            help="Constrained decoding: none, routine (any listed tool) or next (the Routine's next step; "
                 "default: ROUTINE_CONSTRAIN).")] = None,
        tools_in_prompt: Annotated[str | None, typer.Option(
            help="Tools in the prompt: routine or all (default: ROUTINE_TOOLS_IN_PROMPT).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    ) -> None:
        """Run a Routine for one question, printing each step as it happens and the answer."""
        settings = Settings()
        servers_file = servers or settings.servers_file
        if servers_file is None:
            raise typer.BadParameter("no downstream servers: pass --servers FILE or set ROUTINE_SERVERS_FILE")
        the_routine = load_routine(routine, settings)
        run_mode = settings.run_mode(mode)
        if run_mode not in MODES:
            raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)}")
        model_backend = None if run_mode == "bound" else backend_from_options(
            backend, settings, model=model, base_url=base_url, adapter=adapter
        )
        parsed_inputs = json.loads(inputs) if inputs else None
        config = ExecutorConfig(
            mode=run_mode, constrain=constrain or settings.constrain,  # type: ignore[arg-type]
            tools_in_prompt=tools_in_prompt or settings.tools_in_prompt,  # type: ignore[arg-type]
            memory_threshold=settings.memory_threshold, memory_layout=settings.memory_layout,
            max_steps=settings.max_steps, max_retries=settings.max_retries, tool_timeout=settings.tool_timeout,
            extract_inputs=settings.extract_inputs, today=settings.today,
        )

        async def go() -> Any:
            async with ToolHub.from_config(servers_file, timeout=settings.tool_timeout) as hub:
                executor = Executor(hub, model_backend, config, RunLog(settings.runlog_path),
                                    variables=VariableMemory)
                return await executor.run(
                    the_routine, query, inputs=parsed_inputs, user_id=user_id,
                    on_step=None if json_out else print_step,
                )

        if not json_out:
            typer.echo(f"Routine {the_routine.id or the_routine.name} ({run_mode} mode)")
        result = anyio.run(go)
        if json_out:
            typer.echo(json.dumps({"run_id": result.run_id, "status": result.status, "answer": result.answer,
                                   "error": result.error, "trajectory": [c.as_dict() for c in result.calls]}, ensure_ascii=False,
                                  indent=2, default=str))
        elif result.ok:
            typer.echo(f"\nAnswer: {result.answer}\n(run {result.run_id})")
        else:
            typer.echo(f"\nRun failed: {result.error}\n(run {result.run_id}; `routine runs show {result.run_id}`)", err=True)
        if not result.ok:
            raise typer.Exit(1)

    runs = typer.Typer(help="Read the run log.", no_args_is_help=True)
    app.add_typer(runs, name="runs")

    @runs.command("list")
    def runs_list(limit: Annotated[int, typer.Option(help="How many runs.")] = 20) -> None:
        """The latest runs."""
        for r in RunLog(Settings().runlog_path).list_runs(limit):
            typer.echo(f"{r['id']}  {r['status']:8}  {r['mode']:6}  {r['routine_id'] or '-':24}  {r['steps']:3} steps  "
                       f"{r['query'][:60]}")

    @runs.command("show")
    def runs_show(run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix).")]) -> None:
        """Every step of one run, as JSON."""
        json.dump(RunLog(Settings().runlog_path).get_run(run_id), sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")
