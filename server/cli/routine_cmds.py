"""``routine render|parse|validate|flatten|schema``: the Routine format on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from routines.flatten import flatten
from routines.model import Routine, routine_json_schema
from routines.render import parse_routine, render_routine
from routines.validate import load_tools, validate

FileArg = Annotated[Path, typer.Argument(help="A Routine JSON file (an object, or the paper's list of steps).")]


def _load(path: Path) -> Routine:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".txt", ".md"):
        return parse_routine(text, name=path.stem)
    return Routine.from_data(json.loads(text))


def register(app: typer.Typer) -> None:
    @app.command()
    def render(
        file: FileArg,
        io: Annotated[bool, typer.Option("--io", help="Add input/output descriptions.")] = False,
        no_tools: Annotated[bool, typer.Option("--no-tools", help="Leave tool names out.")] = False,
    ) -> None:
        """Print a Routine in the natural-language form the executor reads."""
        typer.echo(render_routine(_load(file), io=io, tool_names=not no_tools))

    @app.command()
    def parse(
        file: Annotated[Path, typer.Argument(help="A text file with a Routine in natural language.")],
    ) -> None:
        """Read a natural-language Routine and print it as JSON."""
        routine = parse_routine(file.read_text(encoding="utf-8"), name=file.stem)
        typer.echo(routine.to_json())

    @app.command("validate")
    def validate_cmd(
        file: FileArg,
        tools: Annotated[
            Path | None, typer.Option("--tools", help="Tool schemas: a JSON list or a tools/list result.")
        ] = None,
    ) -> None:
        """Check a Routine against a tool list; exit 1 when there are errors."""
        routine = _load(file)
        report = validate(routine, load_tools(tools) if tools else [])
        typer.echo(report.format())
        if not tools:
            typer.echo("note: no --tools given, tool names and arguments were not checked", err=True)
        if not report.ok:
            raise typer.Exit(1)

    @app.command("flatten")
    def flatten_cmd(file: FileArg) -> None:
        """Print the unbranched variants of a branching Routine as a JSON list."""
        variants = flatten(_load(file))
        typer.echo(json.dumps([v.model_dump(exclude_none=True) for v in variants], indent=2, ensure_ascii=False))

    @app.command()
    def schema() -> None:
        """Print the JSON schema of a Routine."""
        typer.echo(json.dumps(routine_json_schema(), indent=2))
