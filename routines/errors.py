"""Errors of the ``routines`` package (its backends included), grouped by who must act.

- The caller: ``CallerError`` (a bad Routine, missing inputs, an unknown Routine or tool): fix the request.
  ``RoutineParseError`` and ``ConditionSyntaxError`` (a Routine's text or ``when`` guard does not read) and
  ``SamplingUnavailable`` (the client offers no model) are caller errors too.
- The operator: ``SetupError`` (``MissingExtra``, ``ModelLoadError``, ``UnsupportedModelError``): install a
  package or point the settings at another model.
- The model: ``ModelCallError`` (and ``CallParseError``): the model's call was wrong; fed back to the model
  and retried, never raised to users. ``PlanParseError``: the planner's answer holds no Routine; the planner
  asks again.
- A downstream server or the model endpoint: ``DownstreamError`` (a downstream MCP server failed: timeout,
  connection, crash), ``ModelEndpointError`` (the model endpoint did not answer), ``RunFailed`` (a run ended
  without reaching its finish step; carries the reason and the partial result).

``BindingError``, ``ConstraintError`` and ``WorkerError`` belong to no group: the code that raises them
handles them (the executor turns a ``BindingError`` into a failed step), so one that escapes is our own bug,
like anything else not listed here, and is raised as is.
"""

from __future__ import annotations

from typing import Any


class RoutineError(Exception):
    """Base of the errors this package raises on purpose."""


# ---- the caller ------------------------------------------------------------------------------------------
class CallerError(RoutineError, ValueError):
    """The request or the Routine must be fixed by whoever sent it."""


class PromptTooLong(CallerError):
    """A conversation does not fit the model's context window. ``indices``: which conversations of the
    request (all of them are checked before anything is decoded)."""

    def __init__(self, message: str, indices: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.indices = tuple(indices)

    def __reduce__(self) -> tuple[Any, ...]:  # pickles with its indices (worker processes send it back)
        return (type(self), (str(self), self.indices))


class RoutineParseError(CallerError):
    """The text has no step lines, or a line that looks like a step cannot be read. Says which line."""


class ConditionSyntaxError(CallerError):
    """The condition does not parse. The message shows where."""


class SamplingUnavailable(CallerError, RuntimeError):
    """The MCP client offers no sampling (neither the 2026-07-28 input-required flow nor create_message)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the connected MCP client does not offer sampling, so its model cannot act as the executor; "
            "configure an executor backend on the server (ROUTINE_EXECUTOR_BACKEND=local or openai) instead"
            + (f" ({detail})" if detail else "")
        )


# ---- the operator ----------------------------------------------------------------------------------------
class SetupError(RoutineError):
    """The server's setup must be fixed by its operator (a missing package, a model that cannot be loaded)."""


class MissingExtra(SetupError, ValueError):
    """A feature needs an optional part of the package that is not installed: the operator must install it."""

    def __init__(self, extra: str, module: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra of routine-mcp, which is not installed (no module named "
            f"{module!r}): pip install 'routine-mcp[{extra}]'. Without it, use an OpenAI-compatible endpoint "
            "(ROUTINE_EXECUTOR_BACKEND=openai with ROUTINE_ENDPOINT and ROUTINE_MODEL) or bound runs (mode 'bound')."
        )
        self.extra = extra
        self.module = module


class ModelLoadError(SetupError, RuntimeError):
    """The model or adapter cannot be loaded; the operator must install or point at the right files."""


class UnsupportedModelError(SetupError, ValueError):
    """The model's architecture is not one this decoder implements; the operator must pick another model
    or serve it behind an OpenAI-compatible endpoint (vLLM) and use ``OpenAIBackend``."""


# ---- the model -------------------------------------------------------------------------------------------
class ModelCallError(RoutineError):
    """A model's tool call that the engine refused. ``kind``: no_call, malformed, multiple_calls,
    unknown_tool, not_in_routine, out_of_order, bad_arguments, unknown_key, tool_error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CallParseError(ModelCallError, ValueError):
    """The model's text is not exactly one well-formed call. ``kind``: no_call, malformed or multiple_calls."""


class PlanParseError(RoutineError, ValueError):
    """The model's answer holds no readable Routine JSON. The message says what was found instead."""


# ---- a downstream server or the model endpoint -----------------------------------------------------------
class DownstreamError(RoutineError):
    """A downstream MCP server could not answer (timeout, connection lost, server crashed)."""

    def __init__(self, server: str, tool: str | None, message: str) -> None:
        where = f"{server}/{tool}" if tool else server
        super().__init__(f"downstream server {where}: {message}")
        self.server = server
        self.tool = tool


class ModelEndpointError(RoutineError, ConnectionError):
    """The model endpoint (OpenAI-compatible) could not answer: unreachable, or an error status. The message
    names the endpoint. A ``ConnectionError``, which is what the executor expects from a backend whose model
    cannot answer."""


class RunFailed(RoutineError):
    """A run stopped before its finish step."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


# ---- handled where they are raised -----------------------------------------------------------------------
class BindingError(RoutineError, ValueError):
    """A reference names something the run does not have. The message says which and what exists."""


class ConstraintError(RoutineError, ValueError):
    """The constraint cannot be turned into a grammar (no tools, a schema llguidance rejects). The caller
    must fix the tools or schema it passed."""


class WorkerError(RoutineError, RuntimeError):
    """A worker process failed: its backend raised (the message holds the worker's traceback), or the
    process died or was stopped."""
