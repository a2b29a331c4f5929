"""The error mapping at the MCP boundary (``server.errors``), seen from a real MCP client: who must act decides
what the client gets. A caller's mistake is a ``ToolError`` saying what to fix; a dead downstream server is
reported as that server's connection problem; our own bug is an internal error, logged with its traceback,
never dressed up as the caller's fault."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Self

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from memory.embeddings import HashEmbedder
from routines.hub import ToolHub
from routines.model import Routine
from server.service import RoutineService
from server.settings import Settings
from tests.fixtures.toy_server import CRASH, SALARY_ROUTINE, create_toy_server, stdio_config

pytestmark = pytest.mark.anyio


class Records(logging.Handler):
    """Collects the records of one logger (fastmcp's do not propagate to the root logger)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Self:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)


def service(tmp_path: Path, hub: ToolHub | None = None, **settings: Any) -> RoutineService:
    return RoutineService(Settings(data_dir=tmp_path / "data", executor_backend="none", **settings), hub=hub,
                          embedder=HashEmbedder())


def salary() -> dict[str, Any]:
    return Routine.from_file(SALARY_ROUTINE).model_dump(exclude_none=True, exclude={"version"})


# ---- (1) the caller's mistake ----------------------------------------------------------------------------
async def test_a_callers_mistake_is_a_tool_error_that_says_what_to_fix(tmp_path: Path) -> None:
    from server.app import create_app

    with Records("fastmcp.server.server") as fastmcp_log:
        async with Client(create_app(service(tmp_path, ToolHub({"toy": create_toy_server()})))) as client:
            await client.call_tool("save_routine", {"routine": salary()})
            with pytest.raises(ToolError) as unknown:
                await client.call_tool("get_routine", {"routine_id": "example.salry"})
            with pytest.raises(ToolError) as unbound:
                await client.call_tool("run_routine", {"query": "Ada's salary?", "routine_id": "example.salary",
                                                       "mode": "bound"})
            with pytest.raises(MCPError) as resource:
                await client.read_resource("routine://example.salry")
            with pytest.raises(MCPError) as prompt:
                await client.get_prompt("plan_routine", {"draft": "Look it up.", "tools": "[oops"})
    assert str(unknown.value) == "no Routine 'example.salry'; stored: example.salary"  # the message alone
    assert str(unbound.value) == ("bound mode needs the Routine's inputs: employee_name; pass them as inputs")
    assert (resource.value.error.code, resource.value.error.message) == (
        INVALID_PARAMS, "no Routine 'example.salry'; stored: example.salary")
    assert prompt.value.error.code == INVALID_PARAMS
    assert prompt.value.error.message.startswith("tools is not valid JSON: ")
    assert not [r for r in fastmcp_log.records if r.exc_info]  # no traceback in the log for a caller's mistake


# ---- (2) our own bug -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), KeyError("steps")])
async def test_our_own_bug_is_an_internal_error_logged_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, bug: Exception
) -> None:
    """A KeyError from our own code used to reach the client as a one-line 'not found', as if the caller had
    asked for something that does not exist."""
    from server import app

    def broken(routine: Any) -> str:
        raise bug

    async with Client(app.create_app(service(tmp_path, ToolHub({"toy": create_toy_server()})))) as client:
        await client.call_tool("save_routine", {"routine": salary()})
        monkeypatch.setattr(app, "render_routine", broken)  # what get_routine and the text resource call
        with caplog.at_level(logging.ERROR, logger="server.errors"):
            with pytest.raises(MCPError) as tool:
                await client.call_tool("get_routine", {"routine_id": "example.salary"})
            with pytest.raises(MCPError) as resource:
                await client.read_resource("routine://example.salary/text")
    for error in (tool.value, resource.value):
        assert not isinstance(error, ToolError) and error.error.code == INTERNAL_ERROR
        message = error.error.message
        assert message.startswith("internal error in routine-mcp") and type(bug).__name__ in message
        assert "not a problem with the request" in message and str(bug) not in message
    logged = [r for r in caplog.records if r.name == "server.errors"]
    assert [r.getMessage().split(": ")[0] for r in logged] == [
        "internal error in tool get_routine", "internal error in resource routine://example.salary/text"]
    assert all(r.exc_info and r.exc_info[1] is bug for r in logged)
    assert "in broken" in caplog.text and "raise bug" in caplog.text  # the traceback, down to the line


async def test_a_pydantic_error_inside_a_tool_is_our_bug_named_as_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """fastmcp tags a pydantic error raised in a tool's body (_ToolBodyError); the client and the log name the
    real error, and it is not mistaken for a bad argument."""
    import pydantic

    from server import app

    def broken(routine: Any) -> str:
        pydantic.TypeAdapter(int).validate_python("not a number")
        return ""

    async with Client(app.create_app(service(tmp_path, ToolHub({"toy": create_toy_server()})))) as client:
        await client.call_tool("save_routine", {"routine": salary()})
        monkeypatch.setattr(app, "render_routine", broken)
        with caplog.at_level(logging.ERROR, logger="server.errors"), pytest.raises(MCPError) as tool:
            await client.call_tool("get_routine", {"routine_id": "example.salary"})
    assert not isinstance(tool.value, ToolError) and tool.value.error.code == INTERNAL_ERROR
    assert "(ValidationError)" in tool.value.error.message
    (logged,) = [r for r in caplog.records if r.name == "server.errors"]
    assert isinstance(logged.exc_info[1], pydantic.ValidationError)


# ---- (3) a bad mcpServers file ---------------------------------------------------------------------------
async def test_a_bad_servers_file_names_the_entry_and_what_to_fix(tmp_path: Path) -> None:
    from server.app import create_app

    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"mcpServers": {"hr": {"command": "python", "args": ["hr.py"]},
                                               "crm": {"url": "http://crm/mcp", "headers": {"X-Team": 7}}}}))
    async with Client(create_app(service(tmp_path, servers_file=path))) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("plan_routine", {"draft": "Look the employee up, then answer."})
    assert str(caught.value) == f"servers file {path}: server 'crm': headers.X-Team: Input should be a valid string"


# ---- (4) the downstream server -------------------------------------------------------------------------
async def test_a_dead_downstream_server_is_a_connection_problem_and_another_error_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.app import create_app

    run = {"query": "What does the crasher earn?", "routine_id": "example.salary", "mode": "bound",
           "user_id": "u-hr", "inputs": {"employee_name": CRASH}}  # the toy server exits on this name
    hub = ToolHub.from_config(stdio_config(), timeout=20)
    async with Client(create_app(service(tmp_path, hub))) as client:
        await client.call_tool("save_routine", {"routine": salary()})
        with pytest.raises(ToolError) as dead:
            await client.call_tool("run_routine", run)

        class Broken(Client):  # the hub's client to the downstream server, not this test's client
            async def call_tool_mcp(self, *args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("a bug under the hub")  # on a live connection: not a lost one

        await hub.aclose()  # the next call connects again, with a Broken client
        monkeypatch.setattr("routines.hub.Client", Broken)
        with pytest.raises(MCPError) as other:
            await client.call_tool("run_routine", {**run, "inputs": {"employee_name": "Ada"}})
    assert "downstream server toy/search_employee: connection lost" in str(dead.value)
    assert "(steps done: 1 get_user_profile)" in str(dead.value)
    assert not isinstance(other.value, ToolError) and other.value.error.code == INTERNAL_ERROR
    assert "RuntimeError" in other.value.error.message and "downstream" not in other.value.error.message
