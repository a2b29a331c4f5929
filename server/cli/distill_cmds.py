"""``routine distill``: a scenario's queries, run with their Routines, as a LLaMA-Factory ShareGPT dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from server.settings import Settings
from trainer.distill import DistillOptions, distill
from trainer.lengths import describe

TEACHERS = ("bound", "local", "openai")


def teacher_backend(kind: str, settings: Settings, *, model: str | None, base_url: str | None,
                    api_key: str | None, adapter: str | None) -> Any:
    """``bound``: no model (the bound reference executor); ``local``/``openai``: a model backend."""
    if kind not in TEACHERS:
        raise typer.BadParameter(f"--teacher must be one of {', '.join(TEACHERS)}")
    if kind == "bound":
        return None
    if kind == "openai" and not (model or settings.model):
        raise typer.BadParameter("an openai teacher needs --model (or ROUTINE_MODEL)")
    return settings.backend(kind, model=model, base_url=base_url, api_key=api_key, adapter=adapter)


def register(app: typer.Typer) -> None:
    @app.command("distill")
    def distill_cmd(
        out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (the .jsonl, dataset_info.json, report).")],
        scenario: Annotated[str, typer.Option(help="A built-in scenario name (hr) or a scenario directory.")] = "hr",
        split: Annotated[str, typer.Option(help="Query split: train or test.")] = "train",
        teacher: Annotated[str, typer.Option(help="bound (no model; fully bound Routines), local or openai.")] = "bound",
        model: Annotated[str | None, typer.Option(help="Teacher model name (openai) or local model directory.")] = None,
        base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint of the teacher.")] = None,
        api_key: Annotated[str | None, typer.Option(help="API key of the teacher's endpoint.")] = None,
        adapter: Annotated[str | None, typer.Option(help="LoRA adapter directory (local teacher).")] = None,
        routine: Annotated[bool, typer.Option("--routine/--no-routine", help="Routine in the records' system prompt.")] = True,
        augment: Annotated[int, typer.Option(help="Extra reworded records per query (scenario templates).")] = 0,
        seed: Annotated[int, typer.Option(help="Seed of tool order and augmentation.")] = 0,
        limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
        flatten: Annotated[bool, typer.Option(help="Run each query with its unbranched Routine variant.")] = False,
        shuffle: Annotated[bool, typer.Option("--shuffle-tools/--no-shuffle-tools", help="Seeded tool order per record.")] = True,
        gold: Annotated[bool, typer.Option("--gold/--no-gold", help="Drop trajectories that differ from gold.")] = True,
        name: Annotated[str | None, typer.Option(help="Dataset name (default <scenario>_<split>).")] = None,
        tools_in_prompt: Annotated[str | None, typer.Option(
            help="Tools the records' prompts list: routine (the Routine's, the product) or all (every tool, the "
                 "paper's dataset); default ROUTINE_TOOLS_IN_PROMPT.")] = None,
        data_dir: Annotated[Path | None, typer.Option(help="Data directory the scenario's servers use (default ROUTINE_DATA_DIR).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    ) -> None:
        """Run a scenario's queries with their Routines through the executor and the scenario's servers, keep
        the clean trajectories, and write them as LLaMA-Factory ShareGPT with a dataset_info.json."""
        settings = Settings()
        backend = teacher_backend(teacher, settings, model=model, base_url=base_url, api_key=api_key, adapter=adapter)
        options = DistillOptions(
            with_routine=routine, augment=augment, seed=seed, limit=limit, flatten=flatten, shuffle_tools=shuffle,
            check_gold=gold, name=name, max_retries=settings.max_retries, max_steps=settings.max_steps,
            tools_in_prompt=tools_in_prompt or settings.tools_in_prompt,
            memory_threshold=settings.memory_threshold, tool_timeout=settings.tool_timeout,
        )
        step = 1

        def progress(done: int, total: int, message: str) -> None:
            nonlocal step
            if quiet or (done < total and done < step):
                return
            typer.echo(f"  [{done}/{total}] {message}", err=True)
            step = done + max(1, total // 20)

        async def go() -> Any:
            try:
                return await distill(scenario, split=split, teacher=backend, out_dir=out, options=options,
                                     data_dir=data_dir or settings.home, on_progress=progress)
            finally:
                close = getattr(backend, "aclose", None)
                if close is not None:
                    await close()

        report = anyio.run(go)
        if json_out:
            typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
            return
        typer.echo(f"{report.records} records from {report.queries} queries ({report.calls} calls, "
                   f"teacher {report.teacher}, {report.seconds:.1f} s)")
        if augment:
            typer.echo(f"{report.augmented} reworded queries added by augmentation; "
                       f"{len(report.without_phrasings)} queries had no other phrasing")
        if report.dropped:
            typer.echo(f"dropped {len(report.dropped)}:")
            for item in report.dropped[:20]:
                typer.echo(f"  {item['id']}: {item['reason']}")
            if len(report.dropped) > 20:
                typer.echo(f"  ... and {len(report.dropped) - 20} more (see {report.report_path})")
        for line in describe(report.lengths):
            typer.echo(line)
        typer.echo(f"dataset: {report.out_path}\ndataset_info: {report.dataset_info_path} (dataset {report.dataset!r})")
