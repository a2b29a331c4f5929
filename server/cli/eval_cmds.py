"""``routine eval``: the evaluation harness from the command line (paper section 5, design 7).

    routine eval --scenario hr --split test --config main --backend local [--constrain next] [--tools-in-prompt all]
        [--limit 300] [--workers 2]

Records (once, cached) the scenario's gold trajectories through its servers, decomposes them into per-step
samples under each configuration, runs them through the backend with a progress bar and writes a report
folder: ``runs/*.json`` (every sample's verdict), ``report.md`` (tables in the paper's shape),
``report.json`` and ``plots/*.png``. Runs accumulate in the folder, so the constrained and free runs of a
model, or several models, end up side by side in one report.

``--workers N`` (local backend) runs N copies of the embedded model in worker processes, one torch thread
each unless ``--threads`` says otherwise; per-step samples go to them as lanes (``evals.runner``).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from evals.configs import CONFIGS, EvalConfig, RoutineCatalog, build_samples, resolve_configs
from evals.decompose import DEFAULT_SHUFFLE, SHUFFLES, TrajectorySet, load_trajectories, select_queries
from evals.end_to_end import e2e_samples, run_end_to_end
from evals.report import e2e_record, save_run, setting, step_record, write_report
from evals.runner import RunOptions, run_samples, scripted_backend
from routines.backends import create_backend
from routines.backends.process import ProcessBackend, close_all, start_all
from routines.errors import CallerError
from routines.hub import ToolHub
from routines.run_config import TOOLS_IN_PROMPT, constrain_mode
from routines.scenario import Scenario
from server.settings import Settings

BACKENDS = ("local", "openai", "scripted")


def _read_replies(path: Path) -> dict[str, str]:
    """Recorded outputs for the scripted backend: JSONL lines ``{"id": <sample id>, "output": <text>}``."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or "id" not in row or "output" not in row:
            raise ValueError(f"{path}:{n}: expected {{\"id\": <sample id>, \"output\": <model text>}}")
        out[str(row["id"])] = str(row["output"])
    return out


def _label(backend: str, model: str | None, adapter: str | None, replies: Path | None) -> str:
    if backend == "local":
        base = Path(model).stem if model else "SmolLM2-135M"
        return f"{base}+{Path(adapter).name}" if adapter else base
    if backend == "openai":
        return model or "openai"
    return f"scripted-{replies.stem}" if replies else "scripted-oracle"


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        scenario: Annotated[str, typer.Option(help="A built-in scenario name (hr) or a scenario directory.")] = "hr",
        split: Annotated[str, typer.Option(help="Query split: test or train.")] = "test",
        config: Annotated[str, typer.Option(
            help=f"Comma-separated configurations: {', '.join(CONFIGS)}; 'main' (the paper's three) or 'all' "
                 "(every per-step configuration).")] = "main",
        backend: Annotated[str | None, typer.Option(help="local, openai or scripted (default: settings).")] = None,
        model: Annotated[str | None, typer.Option(help="Served model / LoRA name (openai) or local model path.")] = None,
        base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint URL.")] = None,
        adapter: Annotated[str | None, typer.Option(help="LoRA adapter directory (local backend).")] = None,
        replies: Annotated[Path | None, typer.Option(
            help="Scripted backend: JSONL of {id, output} to judge; default answers every sample correctly.")] = None,
        constrain: Annotated[str, typer.Option(
            help="Constrained decoding: none, routine (one call of any listed tool) or next (one call of a tool the "
                 "Routine allows at that step).")] = "none",
        tools_in_prompt: Annotated[str, typer.Option(
            help="Tools the prompt lists: routine (the Routine's, the product protocol) or all (every downstream "
                 "tool, the paper's protocol).")] = "routine",
        limit: Annotated[int | None, typer.Option(
            help="Evaluate a seeded subset of whole queries holding at least this many steps.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the tool order, candidate Routines and the subset.")] = 0,
        shuffle: Annotated[str, typer.Option(
            help=f"Seeded tool order: {', '.join(SHUFFLES)} (none: the servers' order).")] = DEFAULT_SHUFFLE,
        out: Annotated[Path | None, typer.Option(help="Report folder (default: <data dir>/evals/<scenario>/report).")] = None,
        data_dir: Annotated[Path | None, typer.Option(help="Data directory (default: ROUTINE_DATA_DIR).")] = None,
        concurrency: Annotated[int, typer.Option(help="Requests in flight (HTTP backends).")] = 8,
        chunk: Annotated[int, typer.Option(help="Samples per batch call (local backend).")] = RunOptions().chunk,
        max_batch: Annotated[int, typer.Option(help="Sequences decoded together (local backend).")] = 48,
        threads: Annotated[int | None, typer.Option(
            help="Torch threads (local backend; 1 is faster on a machine busy with other work).")] = None,
        workers: Annotated[int, typer.Option(
            help="Local backend: worker processes, each with its own copy of the model and 1 torch thread "
                 "(unless --threads); per-step samples are spread over them, e2e uses one.")] = 1,
        dtype: Annotated[str | None, typer.Option(
            help="Local backend numerics: float32, bfloat16 or auto (default: ROUTINE_LOCAL_DTYPE, float32).")] = None,
        max_tokens: Annotated[int, typer.Option(help="Most tokens per output.")] = RunOptions().max_tokens,
        label: Annotated[str | None, typer.Option(help="The model's name in the report's tables.")] = None,
        refresh: Annotated[bool, typer.Option(help="Record the trajectories again even if cached.")] = False,
        progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    ) -> None:
        """Evaluate a model on a scenario's per-step samples (and whole queries with e2e); write a report."""
        settings = Settings()
        kind = backend or settings.executor_backend
        if kind not in BACKENDS:
            raise typer.BadParameter(f"--backend must be one of {', '.join(BACKENDS)}")
        if shuffle not in SHUFFLES:
            raise typer.BadParameter(f"--shuffle must be one of {', '.join(SHUFFLES)}")
        if dtype not in (None, "float32", "bfloat16", "auto"):
            raise typer.BadParameter(f"--dtype must be float32, bfloat16 or auto, not {dtype!r}")
        if workers < 1:
            raise typer.BadParameter("--workers must be at least 1")
        if workers > 1 and kind != "local":
            raise typer.BadParameter(f"--workers is for the local backend; the {kind} backend takes --concurrency")
        if tools_in_prompt not in TOOLS_IN_PROMPT:
            raise typer.BadParameter(f"--tools-in-prompt must be one of {', '.join(TOOLS_IN_PROMPT)}")
        try:
            constrain = constrain_mode(constrain)
        except CallerError as exc:
            raise typer.BadParameter(str(exc)) from None
        label_setting = setting(constrain, tools_in_prompt)
        configs = resolve_configs(config)
        home = (data_dir or settings.data_dir).expanduser()
        the_scenario = Scenario.load(scenario)
        out_dir = out or home / "evals" / the_scenario.name / "report"
        recorded = _read_replies(replies) if replies else None
        name = label or _label(kind, model or (settings.model if kind == "openai" else settings.local_model),
                               settings.adapter_for(adapter, model) if kind == "local" else None, replies)

        def command(cfg: EvalConfig) -> str:
            parts = ["routine", "eval", "--scenario", scenario, "--split", split, "--config", cfg.name, "--backend", kind]
            for flag, value in (("--model", model), ("--base-url", base_url), ("--adapter", adapter),
                                ("--replies", replies), ("--limit", limit), ("--out", out),
                                ("--data-dir", data_dir), ("--threads", threads), ("--dtype", dtype),
                                ("--workers", workers if workers != 1 else None),
                                ("--max-tokens", max_tokens if max_tokens != RunOptions().max_tokens else None)):
                if value is not None:
                    parts += [flag, str(value)]
            parts += ["--seed", str(seed), "--shuffle", shuffle, "--tools-in-prompt", tools_in_prompt,
                      "--constrain", constrain]
            return shlex.join(parts)

        def make_backends() -> list[Any]:
            """The model backends: none (scripted), one, or ``workers`` worker processes (local)."""
            if kind == "local":
                local = {**settings.backend_options("local", model=model, adapter=adapter, dtype=dtype),
                         "max_batch": max_batch}
                if workers == 1:
                    return [create_backend("local", threads=threads, **local)]
                return [ProcessBackend(create_backend, kind="local", threads=threads or 1, **local)
                        for _ in range(workers)]
            if kind == "openai":
                return [settings.backend("openai", model=model, base_url=base_url)]
            return []

        async def go() -> None:
            tset: TrajectorySet = await load_trajectories(
                the_scenario, split, home, refresh=refresh, memory_threshold=settings.memory_threshold,
                memory_layout=the_scenario.memory_layout,
            )
            if tset.problems:
                typer.echo(f"warning: {len(tset.problems)} gold queries did not reproduce and are left out "
                           f"(first: {tset.problems[0]})", err=True)
            chosen = select_queries(tset.trajectories, limit, seed)
            steps = sum(len(t.calls) for t in chosen)
            subset = "all" if limit is None else f"seeded subset (seed {seed}) of >= {limit} steps"
            typer.echo(f"{the_scenario.name}/{split}: {len(chosen)} of {len(tset.trajectories)} queries, {steps} steps "
                       f"({subset}); model {name}, {label_setting}", err=True)
            catalog = RoutineCatalog.from_scenario(the_scenario)
            model_backends = make_backends()
            model_backend = model_backends[0] if model_backends else None
            meta_base = {"scenario": the_scenario.name, "split": split, "seed": seed, "shuffle": shuffle,
                         "subset": subset, "left_out": len(tset.problems), "workers": workers,
                         "constrain": constrain, "tools_in_prompt": tools_in_prompt}
            options = RunOptions(constrain=constrain, max_tokens=max_tokens, concurrency=concurrency, chunk=chunk,
                                 progress=progress)
            try:
                if workers > 1:  # load every copy of the model before any timing starts
                    typer.echo(f"starting {workers} worker processes (each loads the model)", err=True)
                    started = time.perf_counter()
                    await start_all(model_backends)
                    typer.echo(f"{workers} workers ready in {time.perf_counter() - started:.0f} s", err=True)
                for cfg in configs:
                    meta = {**meta_base, "command": command(cfg)}
                    started = time.perf_counter()
                    if cfg.end_to_end:
                        async with ToolHub.from_config(the_scenario.servers(home)) as hub:
                            run_backend = model_backend or scripted_backend(
                                e2e_samples(chosen, catalog, await hub.list_tools(), tools_in_prompt),  # type: ignore[arg-type]
                                recorded or None,
                                repeat=settings.max_retries + 1)
                            tasks = await run_end_to_end(
                                chosen, catalog, hub, run_backend, config=cfg, constrain=constrain,
                                tools_in_prompt=tools_in_prompt,  # type: ignore[arg-type]
                                concurrency=concurrency, max_retries=settings.max_retries,
                                memory_threshold=settings.memory_threshold, max_tokens=max_tokens,
                                memory_layout=the_scenario.memory_layout, today=the_scenario.today,
                                progress=progress)
                        record = e2e_record(cfg, tasks, model=name, constrained=label_setting,
                                            seconds=time.perf_counter() - started, meta=meta)
                        summary = f"success {100 * (record['rates']['success'] or 0):.1f}%"
                    else:
                        samples = build_samples(cfg, chosen, tset.tools, catalog, seed=seed, shuffle=shuffle,  # type: ignore[arg-type]
                                                tools_in_prompt=tools_in_prompt)
                        lanes = model_backends or [scripted_backend(samples, recorded or None)]
                        results = await run_samples(samples, lanes, options, desc=cfg.name)
                        record = step_record(cfg, results, model=name, constrained=label_setting,
                                             seconds=time.perf_counter() - started, meta=meta)
                        s = record["scores"]
                        summary = "  ".join(f"{k} {100 * (s[k] or 0):.1f}%" for k in ("structural", "tool", "parameters", "overall"))
                    save_run(out_dir, record)
                    write_report(out_dir)
                    typer.echo(f"{cfg.name:15} {summary}  ({record['seconds']:.0f} s)")
            finally:
                await close_all(model_backends)

        anyio.run(go)
        typer.echo(f"report: {out_dir / 'report.md'}")
