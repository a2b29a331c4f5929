"""A downstream MCP server that dies before or during a run (real stdio and HTTP servers): the run fails
clearly, the log closes it, and the next run works once the server is back."""

from __future__ import annotations

import pytest

from memory.runlog import RunLog, StepRecord
from routines.hub import ToolHub
from tests.fixtures.executing import SALARY, executor_for
from tests.fixtures.toy_server import (
    CRASH,
    HttpToyServer,
    stdio_config,
)

pytestmark = pytest.mark.anyio



async def test_a_stdio_server_killed_mid_run_fails_the_run_and_the_next_run_works(runlog: RunLog) -> None:
    async with ToolHub.from_config(stdio_config(), timeout=20) as hub:
        executor = executor_for(hub, runlog=runlog, mode="bound")
        crashed = await executor.run(SALARY, "?", inputs={"employee_name": CRASH}, user_id="u-hr")
        after = await executor.run(SALARY, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr")
    assert not crashed.ok and crashed.error_kind == "downstream"
    assert (crashed.error or "").startswith("downstream server toy/search_employee:")
    logged = runlog.get_run(crashed.run_id or "")
    assert logged["status"] == "failed"
    assert [(s["step"], s["error_kind"]) for s in logged["steps"]] == [("1", None), ("2", "downstream")]
    assert logged["steps"][0]["result"] == {"user_id": "u-hr", "role": "hr"}
    assert after.ok and "98000" in (after.answer or "")


async def test_a_server_that_is_down_before_the_run_starts_fails_the_run(runlog: RunLog) -> None:
    async with ToolHub.from_config({"mcpServers": {"toy": {"command": "/nonexistent/toy"}}}, timeout=5) as hub:
        result = await executor_for(hub, runlog=runlog).run(
            SALARY, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr", mode="bound")
    assert not result.ok and result.error_kind == "downstream"
    assert (result.error or "").startswith("downstream server toy: cannot connect")
    logged = runlog.get_run(result.run_id or "")
    assert (logged["status"], logged["error"], logged["steps"]) == ("failed", result.error, [])


async def test_an_http_server_stopped_mid_run_fails_the_run_and_the_next_run_works_once_it_is_back(
    runlog: RunLog,
) -> None:
    with HttpToyServer() as server:
        async with ToolHub.from_config({"mcpServers": {"toy": {"url": server.url}}}, timeout=10) as hub:
            executor = executor_for(hub, runlog=runlog, mode="bound")

            def stop_after_step_1(rec: StepRecord) -> None:
                if rec.step == "1":
                    server.stop()

            failed = await executor.run(SALARY, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr",
                                        on_step=stop_after_step_1)
            server.start()
            after = await executor.run(SALARY, "Ada?", inputs={"employee_name": "Ada"}, user_id="u-hr")
    assert not failed.ok and failed.error_kind == "downstream"
    assert [(s["step"], s["error_kind"]) for s in runlog.get_run(failed.run_id or "")["steps"]] == [
        ("1", None), ("2", "downstream")]
    assert after.ok and "98000" in (after.answer or "")
