"""Errors at the MCP boundary: one mapping from what our code raises to what an MCP client sees, grouped by
who must act. Modelled on fastmcp's ``ErrorHandlingMiddleware``, which reads the same wrapped cause.

- The caller (``CallerError``; memory's ``ProcedureMemoryError``: an unknown or invalid Routine, missing
  inputs, a limit): a tool answers ``ToolError`` with the message, which says what to fix; a resource or a
  prompt answers invalid params (-32602) with it.
- The operator (``SetupError``: a missing extra, a model that does not load; ``EmbeddingModelError``):
  ``ToolError`` with the message (what to install or set); error -32603 with it for a resource or prompt.
- A downstream server, the model endpoint or the client's model (``DownstreamError``; ``ConnectionError``,
  which backends raise as ``ModelEndpointError`` and distillation as its teacher's error; ``RunFailed``):
  ``ToolError`` with the message, which names the server or endpoint.
- Anything else is our own bug: logged here with its traceback; the client gets internal error -32603
  naming the exception's type, never a message that blames its request.

fastmcp's own errors pass unchanged: a ``ToolError`` a tool raises on purpose (a failed run, a missing
scope) and a failed argument validation (``server.messages.ReadableValidationErrors`` words it).

``CLIError`` is the command line's caller error: one ``error:`` line and exit code 2 (``server.cli.main``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import mcp.types as mt
from fastmcp.exceptions import FastMCPError, PromptError, ResourceError, ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import ValidationError as PydanticValidationError

from memory.errors import EmbeddingModelError, ProcedureMemoryError
from routines.errors import CallerError, DownstreamError, RunFailed, SetupError

log = logging.getLogger(__name__)

Who = Literal["caller", "operator", "downstream"]


class CLIError(Exception):
    """A problem the user of the command line must fix; printed as one line, exit code 2."""


def who_must_act(exc: BaseException) -> Who | None:
    """Who must act on ``exc``; None when nobody outside can: it is our own bug."""
    if isinstance(exc, (SetupError, EmbeddingModelError)):
        return "operator"
    if isinstance(exc, (CallerError, ProcedureMemoryError)):
        return "caller"
    if isinstance(exc, (DownstreamError, ConnectionError, RunFailed)):
        return "downstream"
    return None


def internal_error(exc: BaseException, where: str) -> MCPError:
    """Log our own bug with its traceback and return what the client gets instead: an internal error that
    does not blame the request."""
    log.error("internal error in %s: %s: %s", where, type(exc).__name__, exc,
              exc_info=(type(exc), exc, exc.__traceback__))
    return MCPError(code=INTERNAL_ERROR, message=(
        f"internal error in routine-mcp while serving {where} ({type(exc).__name__}); this is a bug in the "
        "server, not a problem with the request: the server's log has the details"))


def client_error(exc: FastMCPError, where: str, kind: type[FastMCPError]) -> Exception:
    """What the client gets for ``exc``, the error fastmcp made of what ``where`` raised (its ``__cause__``).
    ``kind``: ``ToolError``, ``ResourceError`` or ``PromptError``. Returns ``exc`` itself for fastmcp's own
    errors."""
    cause = exc.__cause__
    if type(cause).__name__ == "_ToolBodyError" and cause.__cause__ is not None:
        cause = cause.__cause__  # fastmcp's tag on a pydantic error raised inside a tool: our bug, named as itself
    elif cause is None or isinstance(cause, (FastMCPError, MCPError, PydanticValidationError)):
        # Raised on purpose, a protocol outcome, or argument validation (fastmcp cannot tell a resource's or
        # prompt's own pydantic error from a bad argument, so those pass as they are).
        return exc
    who = who_must_act(cause)
    if who is None:
        return internal_error(cause, where)
    if who == "caller" and kind is not ToolError:
        return MCPError(code=INVALID_PARAMS, message=str(cause))
    return kind(str(cause))


class ErrorMapping(Middleware):
    """Applies ``client_error`` to every tool call, resource read and prompt. Put it first (outermost)."""

    def __init__(self) -> None:
        _quiet_expected_tracebacks()

    async def on_call_tool(self, context: MiddlewareContext[mt.CallToolRequestParams], call_next: CallNext[Any, Any]) -> Any:
        try:
            return await call_next(context)
        except FastMCPError as exc:
            _reraise(exc, client_error(exc, f"tool {context.message.name}", ToolError))

    async def on_read_resource(
        self, context: MiddlewareContext[mt.ReadResourceRequestParams], call_next: CallNext[Any, Any]
    ) -> Any:
        try:
            return await call_next(context)
        except FastMCPError as exc:
            _reraise(exc, client_error(exc, f"resource {context.message.uri}", ResourceError))

    async def on_get_prompt(self, context: MiddlewareContext[mt.GetPromptRequestParams], call_next: CallNext[Any, Any]) -> Any:
        try:
            return await call_next(context)
        except FastMCPError as exc:
            _reraise(exc, client_error(exc, f"prompt {context.message.name}", PromptError))


def _reraise(exc: FastMCPError, mapped: Exception) -> None:
    if mapped is exc:
        raise exc
    raise mapped from exc.__cause__


class _NoTracebackForExpected(logging.Filter):
    """fastmcp logs whatever a tool, resource or prompt raises with its traceback. An error the caller, the
    operator or a downstream server must act on is not a bug: its line stays, its traceback goes, so
    tracebacks in the server's log are our own bugs."""

    def filter(self, record: logging.LogRecord) -> bool:
        raised = record.exc_info[1] if record.exc_info else None
        while isinstance(raised, FastMCPError):  # fastmcp's wrapper of what we raised
            raised = raised.__cause__
        if raised is not None and who_must_act(raised) is not None:
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = _NoTracebackForExpected()


def _quiet_expected_tracebacks() -> None:
    fastmcp_log = logging.getLogger("fastmcp.server.server")
    if _FILTER not in fastmcp_log.filters:
        fastmcp_log.addFilter(_FILTER)
