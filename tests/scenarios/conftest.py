"""Fixtures for the HR scenario tests: one seed-7 company database per test session (about 4 seconds)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import fastmcp
import pytest

from scenarios.hr import build_database, create_server


@pytest.fixture(scope="session")
def hr_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_database(tmp_path_factory.mktemp("hr") / "hr.sqlite", seed=7)


@pytest.fixture
async def hr_client(hr_db: Path) -> AsyncIterator[fastmcp.Client]:
    async with fastmcp.Client(create_server(hr_db)) as client:
        yield client
