"""Errors of the evaluation, grouped like ``routines.errors`` by who must act."""

from __future__ import annotations

from routines.errors import SetupError


class BfclUnavailable(SetupError, ImportError):
    """``bfcl-eval`` is missing or broken: install it with ``pip install --no-deps bfcl-eval``."""
