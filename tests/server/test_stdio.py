"""``python -m server serve`` as a subprocess on stdio, started the way Claude Desktop starts it (an
``mcpServers`` entry with command, args and env), with the HR scenario's stdio server as its downstream."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from routines.scenario import Scenario

pytestmark = pytest.mark.anyio


def claude_desktop_config(data_dir: Path, servers_file: Path) -> dict[str, Any]:
    return {"mcpServers": {"routine": {
        "command": sys.executable,
        "args": ["-m", "server", "serve"],
        "env": {"ROUTINE_DATA_DIR": str(data_dir), "ROUTINE_SERVERS_FILE": str(servers_file),
                "ROUTINE_EXECUTOR_BACKEND": "none"},
        "cwd": str(data_dir),  # not the checkout: the installed package must be enough
    }}}


async def test_serve_on_stdio_as_claude_desktop_starts_it(tmp_path, hr_db, hr_routines, people) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(hr_db, data_dir / "hr.sqlite")
    servers_file = tmp_path / "servers.json"
    servers_file.write_text(json.dumps(Scenario.load("hr").servers(data_dir)))
    config = claude_desktop_config(data_dir, servers_file)
    routine = hr_routines["hr.salary"].model_dump(exclude_none=True, exclude={"version"})

    async with Client(config, timeout=60) as client:
        tools = {t.name for t in await client.list_tools()}
        saved = (await client.call_tool("save_routine", {"routine": routine})).structured_content
        out = (await client.call_tool("run_routine", {
            "query": f"What does {people.employee_name} earn?", "routine_id": "hr.salary", "mode": "bound",
            "inputs": {"employee_name": people.employee_name, "department": people.department},
            "user_id": people.hr_user,
        })).structured_content
        with pytest.raises(ToolError, match="needs an executor model, and ROUTINE_EXECUTOR_BACKEND is 'none'"):
            await client.call_tool("run_routine", {"query": "pay?", "routine_id": "hr.salary", "mode": "model"})
    assert tools == {"run_routine", "retrieve_routine", "plan_routine", "distill_dataset", "save_routine",
                     "get_routine", "list_routines", "delete_routine"}
    assert saved["version"] == 1
    assert [s["tool"] for s in out["steps"]][-1] == "summarize" and people.employee_name in out["answer"]
    assert (data_dir / "routines.sqlite").exists() and (data_dir / "runs.sqlite").exists()

    async with Client(config, timeout=60) as client:  # a restarted server still has the Routine
        listed = (await client.call_tool("list_routines", {})).structured_content["result"]
    assert [(r["id"], r["version"]) for r in listed] == [("hr.salary", 1)]
