"""Errors grouped by who must act.

- ``CallerError``: the caller (a bad Routine, missing inputs, an unknown Routine): fix the request.
- ``ModelCallError``: the model's call was wrong; fed back to the model and retried, never raised to users.
- ``DownstreamError``: a downstream MCP server failed (timeout, connection, crash): check that server.
- ``RunFailed``: a run ended without reaching its finish step; carries the reason and the partial result.
Anything else is our own bug and is raised as is.
"""

from __future__ import annotations

from typing import Any


class RoutineError(Exception):
    """Base of the errors this package raises on purpose."""


class CallerError(RoutineError, ValueError):
    """The request or the Routine must be fixed by whoever sent it."""


class ModelCallError(RoutineError):
    """A model's tool call that the engine refused. ``kind``: no_call, malformed, multiple_calls,
    unknown_tool, not_in_routine, out_of_order, bad_arguments, unknown_key, tool_error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class DownstreamError(RoutineError):
    """A downstream MCP server could not answer (timeout, connection lost, server crashed)."""

    def __init__(self, server: str, tool: str | None, message: str) -> None:
        where = f"{server}/{tool}" if tool else server
        super().__init__(f"downstream server {where}: {message}")
        self.server = server
        self.tool = tool


class RunFailed(RoutineError):
    """A run stopped before its finish step."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result
