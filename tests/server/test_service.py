"""``RoutineService``: what survives a restart, and the settings problems a user must fix, each as one clear
error. The HR server in process is the downstream server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from memory.embeddings import HashEmbedder
from memory.errors import InvalidRoutineError
from routines.errors import CallerError
from routines.hub import ToolHub
from scenarios.hr.server import create_server
from server.app import create_app
from server.service import RoutineService, tool_specs
from server.settings import Settings

pytestmark = pytest.mark.anyio


def as_data(routine: Any) -> dict[str, Any]:
    return routine.model_dump(exclude_none=True, exclude={"version"})


async def test_a_restart_keeps_routines_versions_runs_and_embeddings(tmp_path, hr_db, hr_routines, people) -> None:
    data_dir = tmp_path / "data"

    def service(embedder: HashEmbedder) -> RoutineService:
        return RoutineService(Settings(data_dir=data_dir, executor_backend="none", retrieval_threshold=0.05),
                              hub=ToolHub({"hr": create_server(hr_db)}), embedder=embedder)

    first, before = service(HashEmbedder()), None
    try:
        async with Client(create_app(first)) as client:
            for rid in ("hr.salary", "hr.leave"):
                await client.call_tool("save_routine", {"routine": as_data(hr_routines[rid])})
            changed = as_data(hr_routines["hr.salary"]) | {"description": "Salaries and pay of employees."}
            await client.call_tool("save_routine", {"routine": changed})
            before = (await client.call_tool("retrieve_routine", {"query": "salaries and pay"})).structured_content
            run = (await client.call_tool("run_routine", {
                "query": "pay?", "routine_id": "hr.salary", "mode": "bound", "user_id": people.hr_user,
                "inputs": {"employee_name": people.employee_name, "department": people.department},
            })).structured_content
    finally:
        await first.aclose()

    embedder = HashEmbedder()
    second = service(embedder)
    try:
        async with Client(create_app(second)) as client:
            listed = (await client.call_tool("list_routines", {})).structured_content["result"]
            old = (await client.call_tool("get_routine", {"routine_id": "hr.salary", "version": 1})).structured_content
            after = (await client.call_tool("retrieve_routine", {"query": "salaries and pay"})).structured_content
    finally:
        await second.aclose()
    assert [(r["id"], r["version"]) for r in listed] == [("hr.leave", 1), ("hr.salary", 2)]
    assert old["routine"]["description"] == hr_routines["hr.salary"].description
    assert after["routine"]["id"] == "hr.salary" and after["score"] == pytest.approx(before["score"])
    assert embedder.texts_embedded == 1  # only the query: stored Routine vectors were reused
    assert second.runlog.get_run(run["run_id"])["status"] == "finished"


async def test_a_refused_save_leaves_nothing_after_a_restart(make_service, tmp_path, hr_routines) -> None:
    bad = as_data(hr_routines["hr.leave"])
    bad["steps"][-1]["tool"] = "write_answer"
    first = make_service()
    await first.save(as_data(hr_routines["hr.salary"]))
    with pytest.raises(InvalidRoutineError, match="step 3-2_3: tool 'write_answer' is not in the tool list"):
        await first.save(bad)
    await first.aclose()
    second = make_service()
    assert second.store.ids() == ["hr.salary"] and second.store.versions("hr.salary") == [1]


async def test_resolve_routine_by_id_and_version(make_service, hr_routines) -> None:
    service = make_service()
    await service.save(as_data(hr_routines["hr.salary"]))
    await service.save(as_data(hr_routines["hr.salary"]) | {"name": "Pay enquiry"})
    assert service.resolve_routine("q", "hr.salary")[0].version == 2
    assert service.resolve_routine("q", "hr.salary@1")[0].name == "Salary enquiry"
    with pytest.raises(CallerError, match="after '@' comes a version number, e.g. hr.salary@2"):
        service.resolve_routine("q", "hr.salary@latest")


async def test_save_checks_against_given_tools(make_service) -> None:
    service = make_service()
    routine = {"id": "t.word", "name": "Word", "steps": [
        {"step": "1", "name": "Look up", "description": "Look it up", "tool": "lookup", "type": "node"},
        {"step": "2", "name": "Answer", "description": "Answer", "tool": "answer", "type": "finish"}]}
    tools = [{"name": "lookup", "inputSchema": {"type": "object"}}, {"name": "answer", "inputSchema": {"type": "object"}}]
    assert (await service.save(routine, tools=tools)).version == 1
    with pytest.raises(InvalidRoutineError, match="step 1: tool 'lookup' is not in the tool list"):
        await service.save(routine | {"id": "t.other"})  # the HR server has no such tools


# ---- settings a user must fix --------------------------------------------------------------------------
def bare(tmp_path: Path, **settings: Any) -> RoutineService:
    return RoutineService(Settings(data_dir=tmp_path, **settings), embedder=HashEmbedder())


def test_no_downstream_servers_configured(tmp_path) -> None:
    with pytest.raises(CallerError, match="no downstream servers are configured; set ROUTINE_SERVERS_FILE"):
        bare(tmp_path).hub()
    with pytest.raises(CallerError, match=r"servers file .*missing\.json not found"):
        bare(tmp_path, servers_file=tmp_path / "missing.json").hub()
    (tmp_path / "bad.json").write_text('{"mcpServers": {"hr": {"cmd": "x"}}}')
    with pytest.raises(CallerError, match="server 'hr' needs a 'command' \\(stdio\\) or a 'url' \\(HTTP\\)"):
        bare(tmp_path, servers_file=tmp_path / "bad.json").hub()


def test_model_backends_that_are_not_configured(tmp_path) -> None:
    with pytest.raises(CallerError, match="ROUTINE_EXECUTOR_BACKEND=openai needs ROUTINE_MODEL"):
        bare(tmp_path, executor_backend="openai").executor_backend()
    with pytest.raises(CallerError, match="planning needs a model: set ROUTINE_PLANNER_MODEL"):
        bare(tmp_path, planner_backend="openai").planner_backend()
    with pytest.raises(CallerError, match="the sampling executor needs an MCP client connection"):
        bare(tmp_path, executor_backend="sampling").executor_backend()
    assert bare(tmp_path, executor_backend="none").executor_backend() is None
    configured = bare(tmp_path, executor_backend="openai", model="hr", endpoint="http://vllm:8000/v1")
    assert configured.executor_backend().name.startswith("openai")  # built, not called


def test_which_parts_use_the_clients_model(tmp_path) -> None:
    service = bare(tmp_path, executor_backend="sampling", planner_backend="sampling")
    assert service.uses_client_model("executor") and service.uses_client_model("planner")
    assert not bare(tmp_path).uses_client_model("executor")
    from routines.backends.scripted import ScriptedBackend

    injected = RoutineService(Settings(data_dir=tmp_path, planner_backend="sampling"), planner_backend=ScriptedBackend())
    assert not injected.uses_client_model("planner")  # an injected planner wins over the setting


def test_tool_specs_from_caller_given_schemas() -> None:
    specs = tool_specs([{"name": "a", "description": "A", "inputSchema": {"type": "object"}},
                        {"name": "b", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}])
    assert [(s.name, s.parameters["type"]) for s in specs] == [("a", "object"), ("b", "object")]
    with pytest.raises(CallerError, match=r"tools\[1\] is not a tool"):
        tool_specs([{"name": "a"}, "b"])
    with pytest.raises(CallerError, match=r"tools\[0\] \(a\): the input schema must be a JSON-schema object"):
        tool_specs([{"name": "a", "inputSchema": "object"}])


def test_settings_come_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ROUTINE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("ROUTINE_EXECUTOR_BACKEND", "none")
    monkeypatch.setenv("ROUTINE_SAMPLING_TIMEOUT", "12.5")
    monkeypatch.setenv("ROUTINE_AUTH_TOKENS", "a,b")
    settings = Settings(_env_file=None)
    assert settings.home == tmp_path / "d" and settings.home.is_dir()
    assert (settings.executor_backend, settings.sampling_timeout, settings.auth_tokens) == ("none", 12.5, "a,b")
    monkeypatch.delenv("ROUTINE_EXECUTOR_BACKEND")
    assert Settings(_env_file=None).executor_backend == "local"  # nothing configured: the embedded model
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []
