"""Shared pytest fixtures. Keep this file small: package-specific fixtures live beside their tests."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

Cli = Callable[..., tuple[int, str, str]]
"""``cli("routines", "list")`` -> (exit code, stdout, stderr)."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Cli:
    """Run ``routine ARGS`` in this process through the real entry point (typer, settings, exit codes),
    capturing what it writes to the terminal, subprocesses included."""
    from server.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["routine", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capfd.readouterr()
        return code, out, err

    return run
