"""Errors of the trainer, grouped like ``routines.errors`` by who must act."""

from __future__ import annotations

from routines.errors import CallerError, ModelEndpointError


class DatasetFormatError(CallerError):
    """A dataset file breaks LLaMA-Factory's ShareGPT rules or ours; the message lists the records."""


class SequenceError(CallerError):
    """A record cannot become an exact training sequence (its prompts are not append-only)."""


class TeacherUnavailable(ModelEndpointError):
    """The teacher model's endpoint could not answer (the operator must check it)."""
