"""The ``routine`` command. Each command group lives in its own module with a ``register(app)``."""

from __future__ import annotations

import json
import logging
import sys

import typer
from pydantic import ValidationError

from server.cli import routine_cmds, run_cmds
from server.cli import store_cmds

app = typer.Typer(
    name="routine",
    help="routine-mcp: plan, store, run, distill and evaluate Routines; serve them over MCP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command groups register themselves here, one line each.
routine_cmds.register(app)
run_cmds.register(app)
store_cmds.register(app)


class CLIError(Exception):
    """A problem the user must fix; printed as one line, exit code 2."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        lines = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:8]]
        return "invalid Routine: " + "; ".join(lines)
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    return str(exc) or type(exc).__name__


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code instead of raising it here
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except (typer.Exit, SystemExit) as exc:
        raise SystemExit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except (CLIError, ValueError, KeyError, OSError, ValidationError) as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise
