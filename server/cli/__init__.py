"""The ``routine`` command. Each command group lives in its own module with a ``register(app)``."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from server import __version__
from server.cli import routine_cmds, run_cmds, serve_cmds, store_cmds
from server.errors import CLIError

app = typer.Typer(
    name="routine",
    help="routine-mcp: plan, store, run, distill and evaluate Routines; serve them over MCP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"routine-mcp {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """routine-mcp: plan, store, run, distill and evaluate Routines; serve them over MCP."""


# Command groups register themselves here, one line each.
routine_cmds.register(app)
run_cmds.register(app)
serve_cmds.register(app)
store_cmds.register(app)
importlib.import_module("server.cli.distill_cmds").register(app)
importlib.import_module("server.cli.eval_cmds").register(app)
importlib.import_module("server.cli.train_cmds").register(app)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        lines = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:8]]
        return "invalid Routine: " + "; ".join(lines)
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not a UTF-8 text file ({exc.reason} at byte {exc.start})"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"cannot read {exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def _click_errors() -> tuple[type[BaseException], ...]:
    """Usage-error classes of the click that typer uses (typer >= 0.16 vendors its own) and of click itself."""
    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``routine`` script. A problem in the user's input becomes one ``error:`` line on
    stderr and exit code 2, never a traceback; commands signal findings with their own exit codes."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    click_errors = _click_errors()
    try:
        rc = app(args=argv, prog_name="routine", standalone_mode=False)
    except SystemExit:
        raise
    except typer.Abort:
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except (CLIError, ValueError, KeyError, OSError, ValidationError) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except click_errors as exc:  # usage errors: unknown command or option, missing argument
        exc.show()  # type: ignore[attr-defined]
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    # Without standalone mode typer returns what ``typer.Exit(code)`` carried (or the command's result).
    raise SystemExit(rc if isinstance(rc, int) else 0)
