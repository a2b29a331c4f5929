"""Fixtures of the executor tests: a real in-memory MCP toy server behind a ToolHub, the calls it saw, and
an in-memory run log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from memory.runlog import RunLog
from routines.hub import ToolHub
from tests.fixtures.executing import Calls
from tests.fixtures.toy_server import create_toy_server


@pytest.fixture
def calls() -> Calls:
    return []


@pytest.fixture
async def hub(calls: Calls) -> AsyncIterator[ToolHub]:
    async with ToolHub({"toy": create_toy_server(calls)}) as hub:
        yield hub


@pytest.fixture
def runlog() -> RunLog:
    return RunLog(":memory:")
