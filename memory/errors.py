"""Errors of procedure memory, grouped by who must act.

The caller fixes :class:`InvalidRoutineError` (the Routine does not validate), :class:`RoutineNotFoundError`
(no such id or version) and :class:`EmbeddingModelError` (the configured model cannot be loaded). Anything
else coming out of ``memory`` is our own bug and is raised as is.
"""

from __future__ import annotations

from typing import Any


class ProcedureMemoryError(Exception):
    """Base class of the errors a caller of procedure memory can act on."""


class InvalidRoutineError(ProcedureMemoryError, ValueError):
    """A Routine was refused: it does not parse or does not validate. Nothing was stored."""

    def __init__(self, message: str, *, routine_id: str | None = None, findings: list[Any] | None = None) -> None:
        super().__init__(message)
        self.routine_id = routine_id
        self.findings = list(findings or [])


class RoutineNotFoundError(ProcedureMemoryError, KeyError):
    """No Routine with this id (or no such version of it)."""

    def __init__(self, routine_id: str, version: int | None = None, known: list[str] | None = None) -> None:
        self.routine_id = routine_id
        self.version = version
        if version is None:
            hint = f"; stored: {', '.join(known[:10])}" if known else "; the store is empty"
            message = f"no Routine {routine_id!r}{hint}"
        else:
            message = f"Routine {routine_id!r} has no version {version}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would show the repr of its argument
        return str(self.args[0])


class EmbeddingModelError(ProcedureMemoryError, ValueError):
    """The embedding model cannot be loaded (missing package, wrong name or path, no offline copy)."""


class InvalidExampleError(ProcedureMemoryError, ValueError):
    """Example questions were refused (unreadable file, missing field, unknown Routine). Nothing was stored."""
