"""ToolHub against real MCP servers: in memory, a stdio child process, and streamable HTTP on a local port."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from routines.errors import CallerError, DownstreamError
from routines.hub import ToolHub, _transport, load_servers_config
from tests.fixtures.toy_server import HttpToyServer, create_toy_server, stdio_config, toy_processes

pytestmark = pytest.mark.anyio

Calls = list[tuple[str, dict[str, Any]]]


# ---- in-process servers ---------------------------------------------------------------------------
async def test_tools_are_listed_with_their_schemas_once_and_refreshed_on_request() -> None:
    calls: Calls = []
    async with ToolHub({"toy": create_toy_server(calls)}) as hub:
        tools = {t.name: t for t in await hub.list_tools()}
        await hub.list_tools()
        await hub.tool("echo")
        assert calls.count(("tools/list", {})) == 1
        await hub.list_tools(refresh=True)
        assert calls.count(("tools/list", {})) == 2
    assert {"get_user_profile", "count_members", "summarize"} <= set(tools)
    members = tools["count_members"].parameters["properties"]["members"]
    assert members["type"] == "array" and members["items"] == {"type": "string"}
    assert tools["get_salary"].description == "An employee's salary (HR only)."


async def test_a_call_returns_the_structured_value_with_its_type() -> None:
    async with ToolHub({"toy": create_toy_server()}) as hub:
        profile = await hub.call("get_user_profile", {"user_id": "u-hr"})
        number = await hub.call("pid", {})
        text = await hub.call("echo", {"value": '{"not": "parsed"}'})
        counted = await hub.call("count_members", {"members": ["a", "b"]})
    assert profile.value == {"user_id": "u-hr", "role": "hr"} and not profile.is_error
    assert (profile.server, profile.tool) == ("toy", "get_user_profile")
    assert number.value == os.getpid()  # in memory: the same process
    assert text.value == '{"not": "parsed"}'
    assert counted.value == {"count": 2, "received": "list", "first": "a"}


async def test_a_tool_error_comes_back_as_an_error_result_not_an_exception() -> None:
    async with ToolHub({"toy": create_toy_server()}) as hub:
        result = await hub.call("search_employee", {"name": "Nobody"})
        assert result.is_error and "no employee matches 'Nobody'" in result.text
        assert not (await hub.call("search_employee", {"name": "Ada"})).is_error


async def test_an_unknown_tool_is_the_callers_error_and_lists_the_tools() -> None:
    async with ToolHub({"toy": create_toy_server()}) as hub:
        with pytest.raises(CallerError, match=r"no downstream tool 'get_salry'; tools: .*get_salary"):
            await hub.call("get_salry", {})


async def test_several_servers_get_prefixed_names_and_calls_reach_the_right_one() -> None:
    hr_calls: Calls = []
    crm_calls: Calls = []
    async with ToolHub({"hr": create_toy_server(hr_calls), "crm": create_toy_server(crm_calls)}) as hub:
        names = {t.name for t in await hub.list_tools()}
        result = await hub.call("crm_get_user_profile", {"user_id": "u-staff"})
        with pytest.raises(CallerError):
            await hub.call("get_user_profile", {"user_id": "u-staff"})
    assert {"hr_echo", "crm_echo", "hr_summarize"} <= names and "echo" not in names
    assert result.value["role"] == "staff" and result.server == "crm" and result.tool == "get_user_profile"
    assert ("get_user_profile", {"user_id": "u-staff"}) in crm_calls
    assert not [c for c in hr_calls if c[0] == "get_user_profile"]


async def test_prefixing_can_be_forced_either_way() -> None:
    async with ToolHub({"hr": create_toy_server()}, prefix=True) as hub:
        assert "hr_echo" in {t.name for t in await hub.list_tools()}
        assert (await hub.call("hr_echo", {"value": "x"})).value == "x"


async def test_a_slow_tool_times_out_as_a_downstream_error_and_the_hub_goes_on() -> None:
    async with ToolHub({"toy": create_toy_server()}, timeout=10) as hub:
        with pytest.raises(DownstreamError, match=r"toy/wait: no answer within 0.3 s"):
            await hub.call("wait", {"seconds": 5}, timeout=0.3)
        assert (await hub.call("echo", {"value": "still here"})).value == "still here"


# ---- configuration --------------------------------------------------------------------------------
def test_a_config_file_is_read_in_claude_desktops_format(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    path.write_text(json.dumps(stdio_config("hr")), encoding="utf-8")
    assert list(load_servers_config(path)) == ["hr"]
    assert list(load_servers_config({"crm": {"url": "http://x/mcp"}})) == ["crm"]  # bare mapping too


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "is not valid JSON"),
        ("{}", "needs"),
        ('{"mcpServers": {"hr": {"cmd": "python"}}}', "server 'hr' needs a 'command' \\(stdio\\) or a 'url'"),
        ('{"mcpServers": {"hr": "python server.py"}}', "server 'hr' must be an object with a 'command'"),
        ('{"mcpServers": {"hr": {"command": ["python", "server.py"]}}}', "server 'hr': command: Input should be a valid string"),
        ('{"mcpServers": {"hr": {"command": "python", "env": ["A=1"]}}}', "server 'hr': env: Input should be a valid dict"),
        ('{"mcpServers": {"crm": {"url": "ftp://crm/mcp"}}}', "server 'crm': url: 'ftp://crm/mcp' is not an http"),
        ('{"mcpServers": {"crm": {"url": "http://crm/mcp", "headers": {"X-Team": 7}}}}',
         "server 'crm': headers.X-Team: Input should be a valid string"),
    ],
)
def test_a_bad_config_says_what_to_fix(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "servers.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CallerError, match=message) as caught:
        ToolHub.from_config(path)
    assert str(path) in str(caught.value)  # which file


def test_the_format_is_fastmcps_with_ours_on_top(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fastmcp.mcp_config's fields (description, cwd, timeout, transport) are accepted; ours stay: numbers in
    args, ${VAR} in env and bearer, idempotentTools, and in-process servers by name."""
    monkeypatch.setenv("CRM_TOKEN", "tok-2")
    config = {"mcpServers": {
        "hr": {"command": "python", "args": ["server.py", "--port", 8080], "env": {"KEY": "${CRM_TOKEN}"},
               "cwd": str(tmp_path), "description": "the HR server", "idempotentTools": ["*"]},
        "crm": {"url": "http://127.0.0.1:9/mcp", "bearer": "${CRM_TOKEN}", "timeout": 30000},
    }}
    servers = load_servers_config(config)
    assert servers["hr"].args == ["server.py", "--port", "8080"] and servers["hr"].idempotent_tools == ["*"]
    assert servers["hr"].description == "the HR server" and servers["crm"].bearer == "${CRM_TOKEN}"
    hub = ToolHub(servers)
    hr, crm = (hub._conns[name] for name in ("hr", "crm"))
    stdio, http = _transport(hr.entry), _transport(crm.entry)
    assert stdio.env == {"KEY": "tok-2"} and stdio.cwd == str(tmp_path) and stdio.keep_alive is False
    assert http.headers["Authorization"] == "Bearer tok-2"
    in_memory = create_toy_server()
    assert load_servers_config({"mcpServers": {"toy": in_memory}})["toy"] is in_memory


async def test_another_exception_on_a_live_connection_is_raised_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a dead connection is the server's problem: a RuntimeError (or any other error) while the client is
    still connected is not turned into a DownstreamError, and the connection is not reopened."""
    calls: Calls = []

    async def broken(self: Client, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug somewhere under the call")

    async with ToolHub({"toy": create_toy_server(calls)}) as hub:
        await hub.list_tools()
        client = hub._conns["toy"].client
        monkeypatch.setattr(Client, "call_tool_mcp", broken)
        with pytest.raises(RuntimeError, match="a bug somewhere under the call"):
            await hub.call("echo", {"value": "x"})
        monkeypatch.undo()
        assert hub._conns["toy"].client is client  # the same connection goes on
        assert (await hub.call("echo", {"value": "x"})).value == "x"


async def test_a_server_that_cannot_start_is_a_downstream_error() -> None:
    config = {"mcpServers": {"gone": {"command": "/nonexistent/server-binary"}}}
    async with ToolHub.from_config(config, timeout=5) as hub:
        with pytest.raises(DownstreamError, match="downstream server gone: cannot connect"):
            await hub.list_tools()


# ---- a stdio child process ----------------------------------------------------------------------------
async def test_a_stdio_server_gets_its_env_and_is_restarted_after_it_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_SECRET", "s3cret")
    config = stdio_config()
    config["mcpServers"]["toy"]["env"]["TOY_FROM_PARENT"] = "${TOY_SECRET}"
    async with ToolHub.from_config(config, timeout=20) as hub:
        env = (await hub.call("environment", {"name": "TOY_FROM_PARENT"})).value
        first = (await hub.call("pid", {})).value
        os.kill(first, signal.SIGKILL)
        await anyio.sleep(0.2)
        second = (await hub.call("pid", {})).value
    assert env["value"] == "s3cret"
    assert first != os.getpid() and second != first


async def test_concurrent_calls_after_a_crash_start_one_server_and_closing_the_hub_ends_it() -> None:
    async with ToolHub.from_config(stdio_config(), timeout=20) as hub:
        os.kill((await hub.call("pid", {})).value, signal.SIGKILL)
        await anyio.sleep(0.2)
        pids: list[int] = []

        async def call() -> None:
            pids.append((await hub.call("pid", {})).value)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(call)
        assert len(set(pids)) == 1 and toy_processes() == set(pids)
    await anyio.sleep(0.5)
    assert toy_processes() == set()


async def test_a_stdio_server_that_crashes_during_a_call_is_a_downstream_error_then_comes_back() -> None:
    async with ToolHub.from_config(stdio_config(), timeout=20) as hub:
        with pytest.raises(DownstreamError, match="downstream server toy/search_employee"):
            await hub.call("search_employee", {"name": "CRASH"})
        assert (await hub.call("search_employee", {"name": "Ada"})).value["employee_id"] == "E-001"


async def test_a_call_that_is_not_idempotent_is_not_repeated_after_the_connection_is_lost(tmp_path: Path) -> None:
    """Issue 15, item 6: the server pays, then crashes before answering. Repeating the call on a new connection
    would pay twice while the caller saw one success; only a tool that says it is idempotent is repeated."""
    ledger = tmp_path / "payments"
    async with ToolHub.from_config(stdio_config(), timeout=20) as hub:
        with pytest.raises(DownstreamError, match="may or may not have run; it was not repeated"):
            await hub.call("pay", {"ledger": str(ledger), "amount": 100})
        assert ledger.read_text() == "100\n"  # paid once
        assert (await hub.call("pay", {"ledger": str(ledger), "amount": 5})).value == {"entered": 5}
        recorded = tmp_path / "records"
        assert (await hub.call("record", {"ledger": str(recorded), "amount": 7})).value == {"entered": 7}
        assert recorded.read_text() == "7\n7\n"  # idempotentHint: repeated on the new connection


async def test_the_servers_file_can_declare_tools_idempotent(tmp_path: Path) -> None:
    config = stdio_config()
    config["mcpServers"]["toy"]["idempotentTools"] = ["pay"]
    ledger = tmp_path / "payments"
    async with ToolHub.from_config(config, timeout=20) as hub:
        assert (await hub.call("pay", {"ledger": str(ledger), "amount": 3})).value == {"entered": 3}
    assert ledger.read_text() == "3\n3\n"
    config["mcpServers"]["toy"]["idempotentTools"] = "pay"
    with pytest.raises(CallerError, match=r"server 'toy': idempotentTools: must be a list of tool names"):
        ToolHub.from_config(config, timeout=20)  # refused when read, before any server starts


# ---- streamable HTTP ----------------------------------------------------------------------------------
async def test_an_http_server_gets_the_headers_and_bearer_and_survives_a_restart() -> None:
    with HttpToyServer() as server:
        config = {"mcpServers": {"toy": {"url": server.url, "headers": {"X-Team": "payroll"}, "bearer": "tok-1"}}}
        async with ToolHub.from_config(config, timeout=10) as hub:
            headers = (await hub.call("environment", {"name": "HOME"})).value["headers"]
            first = (await hub.call("pid", {})).value
            server.stop()
            with pytest.raises(DownstreamError, match="downstream server toy"):
                await hub.call("pid", {})
            server.start()
            second = (await hub.call("pid", {})).value
    assert headers["authorization"] == "Bearer tok-1" and headers["x-team"] == "payroll"
    assert first != second
