"""``routine routines negatives import|list|rm`` and ``routine routines tune``: what makes retrieval of one
store sharper (docs/procedure-memory.md). Registered on the ``routines`` group by ``store_cmds``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from server.cli.store_cmds import JsonOpt, open_store
from server.settings import Settings


def register(routines: typer.Typer) -> None:
    negatives = typer.Typer(help="Questions no stored Routine serves: retrieval abstains on questions like them.",
                            no_args_is_help=True)
    routines.add_typer(negatives, name="negatives")

    @negatives.command("import")
    def negatives_import(
        file: Annotated[Path, typer.Argument(help="JSONL: one object per line with the question in question (or query, "
                                                  "text) and optionally its kind: unrelated or uncovered.")],
        source: Annotated[str | None, typer.Option("--source", help="Label for them (default: the file name).")] = None,
        kind: Annotated[str, typer.Option("--kind", help="Kind for the lines without a 'kind' field (a line's own "
                                          "kind wins): unrelated (off-topic) or uncovered (in-domain, no Routine "
                                          "does it).")] = "",
    ) -> None:
        """Store negative questions (all or none); they are embedded at the next retrieval."""
        with open_store() as store:
            result = store.import_negatives(file, source=source, kind=kind)
        typer.echo(f"imported {result.added} negative question(s) from {file.name}"
                   + (f", {result.existing} already stored" if result.existing else "")
                   + (f", {result.relabelled} given another kind" if result.relabelled else ""))

    @negatives.command("list")
    def negatives_list(as_json: JsonOpt = False) -> None:
        """Print the stored negative questions."""
        with open_store() as store:
            rows = [{"text": e.text, "kind": e.kind, "source": e.source} for e in store.negatives()]
        if as_json:
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        for row in [] if as_json else rows:
            typer.echo(f"{row['text']}\t{row['kind'] or '-'}\t{row['source']}")
        if not rows:
            typer.echo("no negative questions stored", err=True)

    @negatives.command("rm")
    def negatives_rm(
        source: Annotated[str | None, typer.Option("--source", help="Remove the ones with this label.")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Remove every negative question.")] = False,
    ) -> None:
        """Remove negative questions: from a source, or all of them (--all)."""
        if source is None and not all_:
            raise typer.BadParameter("give --source SOURCE or --all")
        with open_store() as store:
            n = store.delete_negatives(source=source)
        typer.echo(f"deleted {n} negative question(s)")

    @routines.command("tune")
    def tune_cmd(
        epochs: Annotated[int, typer.Option("--epochs", help="Passes over the example questions.")] = 1,
        seed: Annotated[int, typer.Option("--seed", help="Seed: same data and seed, same adapter.")] = 0,
        force: Annotated[bool, typer.Option("--force", help="Train even if this exact adapter is stored.")] = False,
        threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch (default: torch's).")] = None,
        reset: Annotated[bool, typer.Option("--reset", help="Remove the tuned adapters instead (back to the base model).")] = False,
        save: Annotated[Path | None, typer.Option("--save", help="Write the store's adapter to FILE.npz (+ FILE.json) instead.")] = None,
        load: Annotated[Path | None, typer.Option("--load", help="Use the adapter in FILE.npz (from --save) instead of tuning.")] = None,
    ) -> None:
        """Fine-tune the embedding model on the stored Routines, example questions and negatives (a LoRA adapter
        kept in the store, a minute or two on a CPU); retrieval then uses it."""
        from memory.tuning import TuneConfig, export_adapter, import_adapter, tune

        settings = Settings()
        with open_store(settings) as store:
            if reset:
                typer.echo(f"removed {store.delete_tuned_models()} tuned adapter(s)")
                return
            if save is not None:
                typer.echo(f"wrote {export_adapter(store, save)} to {save} and {save.with_suffix('.json')}")
                return
            if load is not None:
                name, exact = import_adapter(store, load)
                typer.echo(f"using {name}" + ("" if exact else ", tuned on other data than this store's (tune to re-tune)"))
                return
            if threads:
                import torch

                torch.set_num_threads(threads)
            result = tune(store, model=settings.embedding_model or None,
                          config=TuneConfig(epochs=epochs, seed=seed), force=force, progress=typer.echo)
        counts = f"{result.examples} example and {result.negatives} negative question(s), {result.routines} Routine(s)"
        if result.trained:
            typer.echo(f"tuned {result.name} on {counts} in {result.seconds:.0f} s ({result.steps} steps)")
        else:
            typer.echo(f"{result.name} is already tuned on {counts}; nothing to do (--force trains again)")


def sharpen_scenario_store(store_path: Path, scenario: Any, echo: Callable[[str], None]) -> None:
    """What a careful user does to a store of a scenario's Routines (docs/procedure-memory.md): import the
    scenario's train questions and the questions written per Routine (``data/examples.jsonl``) as example
    questions, its negative questions and the labelled sets the manifest's ``learned_questions`` lists (held-out
    sets that served their measurement: their questions as examples or negatives), then tune the embedding model
    on them (once: an unchanged store keeps its adapter, so a second run costs nothing)."""
    from memory.embeddings import Embedder
    from memory.errors import EmbeddingModelError
    from memory.retrieval import Retriever
    from memory.store import ProcedureStore
    from memory.tuning import embedder_for, import_adapter, tune

    queries = scenario.root / scenario.manifest.get("queries", "data/queries_{split}.jsonl").format(split="train")
    written = scenario.root / scenario.manifest.get("examples", "data/examples.jsonl")
    negatives = scenario.root / scenario.manifest.get("negatives", "data/negatives_train.jsonl")
    with ProcedureStore(store_path) as store:
        added = sum(store.import_examples(path, skip_unknown=True).added for path in (queries, written) if path.exists())
        refused = store.import_negatives(negatives).added if negatives.exists() else 0
        for relative in scenario.manifest.get("learned_questions", []):  # held-out sets that served their measurement
            examples, negative = store.import_labelled(scenario.root / relative, skip_unknown=True)
            added, refused = added + examples.added, refused + negative.added
        counts = store.example_counts()
        echo(f"   example questions: {sum(counts.values())} for {len(counts)} Routines ({added} new); negative "
             f"questions: {len(store.negatives())} ({refused} new)")
        shipped = scenario.root / scenario.manifest.get("embedding_adapter", "data/embedding_adapter.npz")
        if store.tuned_model(Embedder().name) is None and shipped.exists():
            name, exact = import_adapter(store, shipped)
            echo(f"   embedding model adapter {name}, tuned on them and shipped with the scenario"
                 + ("" if exact else " (on slightly different data: routine routines tune re-tunes on this store)"))
        else:
            try:
                result = tune(store, progress=lambda line: echo(f"     {line}"))
            except EmbeddingModelError as exc:
                echo(f"   retrieval uses the plain embedding model: {exc}")
                return
            echo(f"   embedding model tuned on them: {result.name}"
                 + (f" ({result.seconds:.0f} s)" if result.trained else " (already tuned)"))
        embedded = Retriever(store, embedder_for(store)).sync_examples()  # now rather than at the first question
    if embedded:
        echo(f"   embedded {embedded} example and negative question(s) with it")
