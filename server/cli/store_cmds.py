"""``routine routines add|list|show|rm|import|export``, ``routine routines examples import|list|rm``,
``routine retrieve`` and ``routine plan``.

Configuration comes from :class:`server.settings.Settings` (``ROUTINE_*`` variables or a ``.env`` file), as
for the server, so both use the same store: ``$ROUTINE_DATA_DIR/routines.sqlite`` (default ``~/.routine``).
Retrieval uses the bundled all-MiniLM-L6-v2 unless ``ROUTINE_EMBEDDING_MODEL`` names another local model; the
abstention threshold is ``--threshold`` or ``ROUTINE_RETRIEVAL_THRESHOLD`` (default: calibrated, higher when
Routines have example questions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from memory.store import ProcedureStore
from routines.model import Routine
from routines.render import parse_routine, render_routine
from routines.validate import load_tools
from server.settings import Settings

ToolsOpt = Annotated[
    Path | None, typer.Option("--tools", help="Tool schemas (JSON list or tools/list result) to check tool names "
                              "(default: the tools of the servers in ROUTINE_SERVERS_FILE, when set).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def data_dir() -> Path:
    """The configured data directory (``ROUTINE_DATA_DIR``, default ``~/.routine``)."""
    return Settings().data_dir.expanduser()


def open_store(settings: Settings | None = None) -> ProcedureStore:
    """The configured store, ``routines.sqlite`` in the data directory (created if missing)."""
    return ProcedureStore((settings or Settings()).store_path)


def _read_routine(path: Path) -> Routine:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".txt", ".md"):
        return parse_routine(text, name=path.stem, routine_id=path.stem)
    return Routine.from_data(json.loads(text))


def _tools(path: Path | None) -> list[Any]:
    """The tools to check Routines against: ``--tools``, else those of the configured downstream servers
    (``ROUTINE_SERVERS_FILE``), else none (tool names are not checked)."""
    if path:
        return list(load_tools(path))
    servers = Settings().servers_file
    return anyio.run(_downstream_tools, servers) if servers else []


async def _downstream_tools(servers: Path) -> list[Any]:
    from routines.errors import DownstreamError
    from routines.hub import ToolHub

    try:
        async with ToolHub.from_config(servers) as hub:
            return list(await hub.list_tools())
    except DownstreamError as exc:
        raise ValueError(f"cannot check the Routine's tools against ROUTINE_SERVERS_FILE {servers}: {exc}; start "
                         "the servers or give --tools") from None


def register(app: typer.Typer) -> None:
    routines = typer.Typer(help="Procedure memory: stored Routines and their versions.", no_args_is_help=True)
    app.add_typer(routines, name="routines")

    @routines.command("add")
    def add(
        files: Annotated[list[Path], typer.Argument(help="Routine files: JSON, or natural-language .txt/.md.")],
        tools: ToolsOpt = None,
    ) -> None:
        """Validate and store Routines (each as a new version; all or none)."""
        with open_store() as store:
            before = {info.id: info.version for info in store.list()}
            saved = store.save_many([_read_routine(f) for f in files], tools=_tools(tools))
        for r in saved:
            state = "unchanged" if before.get(r.id or "") == r.version else "saved"
            typer.echo(f"{state} {r.id} version {r.version}")

    @routines.command("list")
    def list_cmd(as_json: JsonOpt = False) -> None:
        """List stored Routines (latest versions)."""
        with open_store() as store:
            infos = store.list()
        if as_json:
            typer.echo(json.dumps([vars(i) for i in infos], indent=2, ensure_ascii=False))
            return
        if not infos:
            typer.echo(f"no Routines stored in {data_dir()}", err=True)
        for i in infos:
            typer.echo(f"{i.id}\tv{i.version}\t{i.steps} steps\t{i.name}")

    @routines.command("show")
    def show(
        routine_id: Annotated[str, typer.Argument(help="The Routine's id.")],
        version: Annotated[int | None, typer.Option("--version", "-v", help="A given version.")] = None,
        text: Annotated[bool, typer.Option("--text", help="Print the natural-language form.")] = False,
        io: Annotated[bool, typer.Option("--io", help="With --text: add input/output descriptions.")] = False,
    ) -> None:
        """Print a stored Routine as JSON (or as text)."""
        with open_store() as store:
            routine = store.get(routine_id, version)
            versions = store.versions(routine_id)
        typer.echo(render_routine(routine, io=io) if text else routine.to_json())
        typer.echo(f"versions: {', '.join(map(str, versions))}", err=True)

    @routines.command("rm")
    def rm(routine_id: Annotated[str, typer.Argument(help="The Routine's id.")]) -> None:
        """Delete a Routine with all its versions and embeddings."""
        with open_store() as store:
            n = store.delete(routine_id)
        typer.echo(f"deleted {routine_id} ({n} version{'s' if n != 1 else ''})")

    @routines.command("import")
    def import_cmd(
        directory: Annotated[Path, typer.Argument(help="A directory of Routine JSON files.")],
        tools: ToolsOpt = None,
    ) -> None:
        """Store every Routine JSON file of a directory, all or none."""
        with open_store() as store:
            saved = store.import_dir(directory, tools=_tools(tools))
        typer.echo(f"imported {len(saved)} Routine(s): {', '.join(f'{r.id} v{r.version}' for r in saved)}")

    @routines.command("export")
    def export_cmd(directory: Annotated[Path, typer.Argument(help="Where to write <id>.json files.")]) -> None:
        """Write the latest version of every Routine to a directory."""
        with open_store() as store:
            paths = store.export_dir(directory)
        typer.echo(f"exported {len(paths)} Routine(s) to {directory}")

    examples = typer.Typer(help="Example questions that help retrieval find a Routine.", no_args_is_help=True)
    routines.add_typer(examples, name="examples")

    @examples.command("import")
    def examples_import(
        file: Annotated[Path, typer.Argument(help="JSONL: one object per line with routine_id and query (or question, text).")],
        source: Annotated[str | None, typer.Option("--source", help="Label for these examples (default: the file name).")] = None,
        skip_unknown: Annotated[
            bool, typer.Option("--skip-unknown", help="Skip examples of Routines that are not stored instead of failing.")
        ] = False,
        with_negatives: Annotated[bool, typer.Option(
            "--with-negatives",
            help="A labelled set: lines without a routine_id are negative questions (their kind: unrelated, uncovered).",
        )] = False,
    ) -> None:
        """Store example questions for stored Routines (all or none); they are embedded at the next retrieval.
        With --with-negatives the file is a labelled set (say, a held-out set that has served its measurement):
        its questions that no Routine serves are stored as negative questions too."""
        with open_store() as store:
            if with_negatives:
                result, refused = store.import_labelled(file, source=source, skip_unknown=skip_unknown)
            else:
                result, refused = store.import_examples(file, source=source, skip_unknown=skip_unknown), None
        typer.echo(f"imported {result.added} example question(s) from {file.name}"
                   + (f", {result.existing} already stored" if result.existing else ""))
        if refused is not None:
            typer.echo(f"imported {refused.added} negative question(s)"
                       + (f", {refused.existing} already stored" if refused.existing else ""))
        if result.skipped:
            listing = ", ".join(f"{rid} ({n})" for rid, n in sorted(result.skipped.items()))
            typer.echo(f"skipped examples of Routines that are not stored: {listing}", err=True)

    @examples.command("list")
    def examples_list(
        routine_id: Annotated[str | None, typer.Argument(help="Print this Routine's example questions.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """How many example questions each Routine has, or one Routine's questions."""
        with open_store() as store:
            if routine_id is not None:
                store.get(routine_id)  # unknown id -> clear error
                rows = [vars(e) for e in store.examples(routine_id)]
            else:
                rows = [{"routine_id": rid, "examples": n} for rid, n in store.example_counts().items()]
        if as_json:
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        elif routine_id is not None:
            for row in rows:
                typer.echo(f"{row['text']}\t{row['source']}")
        else:
            for row in rows:
                typer.echo(f"{row['routine_id']}\t{row['examples']}")
        if not rows:
            typer.echo("no example questions stored", err=True)

    @examples.command("rm")
    def examples_rm(
        routine_id: Annotated[str | None, typer.Argument(help="Remove this Routine's example questions.")] = None,
        source: Annotated[str | None, typer.Option("--source", help="Remove the examples with this label.")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Remove every example question.")] = False,
    ) -> None:
        """Remove example questions: of a Routine, from a source, or all of them (--all)."""
        if routine_id is None and source is None and not all_:
            raise typer.BadParameter("name a Routine id, --source SOURCE, or --all")
        with open_store() as store:
            n = store.delete_examples(routine_id, source=source)
        typer.echo(f"deleted {n} example question(s)")

    from server.cli import memory_cmds

    memory_cmds.register(routines)  # routines negatives ..., routines tune

    @app.command("retrieve")
    def retrieve_cmd(
        question: Annotated[str, typer.Argument(help="The user's question.")],
        k: Annotated[int, typer.Option("-k", help="How many candidates to list.")] = 1,
        threshold: Annotated[
            float | None, typer.Option("--threshold", help="Abstain below this score (default: calibrated).")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Find the stored Routine for a question; exit 1 when no Routine matches well enough."""
        from memory.retrieval import Retriever
        from memory.tuning import embedder_for

        settings = Settings()
        limit = threshold if threshold is not None else settings.retrieval_threshold
        with open_store(settings) as store:
            embedder = embedder_for(store, settings.embedding_model or None)
            result = Retriever(store, embedder, threshold=limit).retrieve(question, k=k)
        if as_json:
            typer.echo(json.dumps({
                "query": question, "abstained": result.abstained, "threshold": result.threshold,
                "routine": result.routine.model_dump(exclude_none=True) if result.routine else None,
                "candidates": [vars(c) for c in result.candidates],
            }, indent=2, ensure_ascii=False))
        else:
            for c in result.candidates:
                typer.echo(f"{c.score:.3f}\t{c.routine_id}\t{c.name}")
            if result.routine is not None:
                typer.echo("")
                typer.echo(render_routine(result.routine))
        if result.abstained:
            typer.echo(result.explain(), err=True)
            raise typer.Exit(1)

    @app.command("plan")
    def plan_cmd(
        draft: Annotated[Path, typer.Option("--draft", help="The expert's draft (a text file).")],
        tools: Annotated[Path | None, typer.Option("--tools", help="Tool schemas: JSON list or tools/list result.")] = None,
        servers: Annotated[
            Path | None, typer.Option("--servers", help='MCP servers config ({"mcpServers": {...}}) to list tools from.')
        ] = None,
        backend: Annotated[str | None, typer.Option(
            "--backend", help="Model backend kind (openai, local, ...); default ROUTINE_PLANNER_BACKEND (openai).")] = None,
        option: Annotated[
            list[str] | None, typer.Option("--option", "-o", help="Backend option KEY=VALUE (JSON values allowed).")
        ] = None,
        bind: Annotated[bool, typer.Option("--bind", help="Ask for args bindings too.")] = False,
        max_repairs: Annotated[int, typer.Option("--max-repairs", help="Feedback rounds before giving up.")] = 2,
        name: Annotated[str, typer.Option("--name", help="The Routine's name (else the model's).")] = "",
        routine_id: Annotated[str | None, typer.Option("--id", help="The Routine's id.")] = None,
        save: Annotated[bool, typer.Option("--save", help="Store the Routine when it validates.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Turn a draft into a validated Routine with a planner model; exit 1 when it never validates."""
        from routines.planner import plan

        if (tools is None) == (servers is None):
            raise typer.BadParameter("give exactly one of --tools TOOLS.json or --servers servers.json")
        tool_list = _tools(tools) if tools else anyio.run(_server_tools, servers)
        settings = Settings()
        kind = backend or settings.planner_backend
        if kind == "sampling":
            raise typer.BadParameter("the sampling planner exists only inside `routine serve` (it is the MCP client's "
                                     "model); pass --backend openai or local")
        model = settings.planner(kind, **_options(option or []))
        if model is None:
            raise typer.BadParameter(f"--backend {kind} has no model; planning needs one (e.g. openai, local)")
        result = anyio.run(lambda: plan(draft.read_text(encoding="utf-8"), tool_list, model, bind=bind,
                                        max_repairs=max_repairs, name=name, routine_id=routine_id))
        if as_json and result.routine is not None:
            typer.echo(result.routine.to_json())
        else:
            typer.echo(result.text)
        typer.echo(f"{len(result.attempts)} attempt(s); {result.report.format()}", err=True)
        if not result.ok:
            raise typer.Exit(1)
        if save and result.routine is not None:
            with open_store() as store:
                saved = store.save(result.routine, tools=tool_list)
            typer.echo(f"saved {saved.id} version {saved.version}", err=True)


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--option {pair!r} is not KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


async def _server_tools(config_path: Path) -> list[Any]:
    """The tools of the MCP servers in a config file (several servers: names come back prefixed)."""
    from fastmcp import Client

    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "mcpServers" not in config:
        raise ValueError(f'{config_path}: an MCP servers config needs an "mcpServers" object')
    async with Client(config) as client:
        return list(await client.list_tools())
