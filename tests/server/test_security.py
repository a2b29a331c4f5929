"""Issue 15: what a hostile client, web page or caller could do through the server, tried against a real
HTTP server on 127.0.0.1 (started the way ``routine serve --http`` starts it) where the item is about HTTP,
and in memory otherwise. docs/security.md states the threat model these tests hold."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client, FastMCP
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError
from fastmcp.server.auth.providers.jwt import JWTVerifier, RSAKeyPair, _import_key_for_algorithm
from joserfc import jwt

from routines.backends.base import BaseBackend, Completion, Constraint, Message
from routines.errors import CallerError
from server.app import create_app
from server.auth import BearerVerifier
from server.security import http_options
from server.settings import Settings
from tests.fixtures.toy_server import free_port

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.example.com"
AUDIENCE = "routine-mcp"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


@asynccontextmanager
async def serving(app: FastMCP, settings: Settings, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """``app`` on a real loopback port with the options ``routine serve --http`` uses; yields the base URL."""
    port = free_port()
    task = asyncio.create_task(app.run_http_async(host=host, port=port, show_banner=False, log_level="warning",
                                                  **http_options(settings, host)))
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            break
        except OSError:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            await anyio.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=5)


async def post(url: str, headers: dict[str, str] | None = None, body: Any = INITIALIZE) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(f"{url}/mcp", json=body, headers=MCP_HEADERS | (headers or {}))


def client(url: str, token: str | None = None) -> Client:
    return Client(StreamableHttpTransport(f"{url}/mcp", auth=token), timeout=30)


@pytest.fixture(scope="module")
def keys() -> RSAKeyPair:
    return RSAKeyPair.generate()


def signed(keys: RSAKeyPair, claims: dict[str, Any]) -> str:
    key = _import_key_for_algorithm(keys.private_key.get_secret_value(), "RS256")
    return jwt.encode({"alg": "RS256"}, {"iss": ISSUER, "aud": AUDIENCE, **claims}, key, algorithms=["RS256"])


# ---- item 3: DNS rebinding ------------------------------------------------------------------------------
async def test_requests_for_another_host_or_from_another_origin_are_refused(make_service, tmp_path) -> None:
    """A page on evil.example that rebinds its name to 127.0.0.1 sends Host: evil.example; a page that posts
    cross-site sends its own Origin. Both are refused; the loopback client and the configured names work."""
    settings = Settings(_env_file=None, data_dir=tmp_path, allowed_hosts="mcp.corp.example",
                        allowed_origins="https://app.corp.example")
    async with serving(create_app(make_service()), settings) as url:
        assert (await post(url)).status_code == 200
        assert (await post(url, {"host": "evil.example"})).status_code == 421
        assert (await post(url, {"host": "evil.example:80", "origin": "http://evil.example"})).status_code == 421
        assert (await post(url, {"origin": "http://evil.example"})).status_code == 403
        assert (await post(url, {"origin": "null"})).status_code == 403
        assert (await post(url, {"host": "mcp.corp.example"})).status_code == 200
        assert (await post(url, {"origin": "https://app.corp.example"})).status_code == 200
        assert (await post(url, {"origin": "http://localhost:3000"})).status_code == 200  # a local tool's page
        async with httpx2.AsyncClient() as http:  # every route, /health included
            assert (await http.get(f"{url}/health", headers={"host": "evil.example"})).status_code == 421
        async with client(url) as mcp:
            assert {t.name for t in await mcp.list_tools()} >= {"run_routine", "save_routine"}


async def test_the_bound_address_is_accepted_and_a_wildcard_turns_the_host_check_off(tmp_path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert http_options(settings, "10.1.2.3")["allowed_hosts"] == ["10.1.2.3"]
    assert http_options(settings, "0.0.0.0")["allowed_hosts"] == []
    assert http_options(settings, "::1")["allowed_hosts"] == ["[::1]"]
    wide = Settings(_env_file=None, data_dir=tmp_path, allowed_hosts="*")
    assert http_options(wide, "0.0.0.0")["allowed_hosts"] == ["*"]


# ---- item 2: request sizes ------------------------------------------------------------------------------
async def test_an_oversized_request_body_is_refused_with_413(make_service, tmp_path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, max_request_bytes=50_000)
    async with serving(create_app(make_service()), settings) as url:
        big = INITIALIZE | {"params": INITIALIZE["params"] | {"padding": "x" * 60_000}}
        response = await post(url, body=big)
        assert response.status_code == 413 and "ROUTINE_MAX_REQUEST_BYTES" in response.text
        assert (await post(url)).status_code == 200


def huge_routine(n: int) -> dict[str, Any]:
    steps = [{"step": str(i), "name": f"s{i}", "description": "d", "tool": "summarize"} for i in range(1, n)]
    return {"id": "huge", "name": "Huge", "steps": [*steps, {"step": str(n), "name": "end", "tool": "summarize",
                                                           "type": "finish"}]}


async def test_a_routine_with_too_many_steps_is_refused_at_once_and_others_are_served(make_service) -> None:
    """Before, 2,000 steps stalled the server for 14 s; now the step limit refuses it at once, and what is
    validated runs in a worker thread, not on the event loop."""
    service = make_service(max_routine_steps=100)
    async with Client(create_app(service)) as mcp:
        started = time.perf_counter()
        with pytest.raises(ToolError, match="2,000 steps; at most 100 are accepted"):
            await mcp.call_tool("save_routine", {"routine": huge_routine(2000)})
        assert time.perf_counter() - started < 2
        assert service.store.ids() == []


async def test_validation_runs_off_the_event_loop(make_service, monkeypatch) -> None:
    import memory.versions

    threads: list[threading.Thread] = []
    original = memory.versions.validate

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(memory.versions, "validate", spy)
    service = make_service()
    await service.save(huge_routine(100))
    assert threads and threading.main_thread() not in threads
    assert service.store.get("huge").version == 1


async def test_long_queries_drafts_and_descriptions_are_refused(make_service, hr_routines) -> None:
    service = make_service(max_query_chars=1000, max_draft_chars=2000, max_text_chars=500)
    data = hr_routines["hr.salary"].model_dump(exclude_none=True, exclude={"version"})
    async with Client(create_app(service)) as mcp:
        await mcp.call_tool("save_routine", {"routine": data})
        for tool, args in [("run_routine", {"query": "q" * 1001, "routine_id": "hr.salary", "mode": "bound"}),
                           ("retrieve_routine", {"query": "q" * 1001})]:
            with pytest.raises(ToolError, match="the query is 1,001 characters long; at most 1,000"):
                await mcp.call_tool(tool, args)
        with pytest.raises(ToolError, match="the draft is 2,001 characters long"):
            await mcp.call_tool("plan_routine", {"draft": "d" * 2001, "tools": [{"name": "x"}]})
        with pytest.raises(ToolError, match="the Routine's description is 501 characters long"):
            await mcp.call_tool("save_routine", {"routine": data | {"description": "d" * 501}})
    assert service.runlog.list_runs() == [] and service.store.versions("hr.salary") == [1]


# ---- item 4: identity and scopes ------------------------------------------------------------------------
@pytest.fixture
async def hr_server(make_service, hr_routines, people, keys, tmp_path) -> AsyncIterator[tuple[str, Any]]:
    service = make_service()
    await service.save(hr_routines["hr.salary"].model_dump(exclude_none=True, exclude={"version"}))
    tokens = [f"tok-staff {people.staff_user}", f"tok-admin {people.hr_user} routines:write datasets:write",
              "tok-frontend - users:act-as", "tok-anon"]
    auth = BearerVerifier(tokens, JWTVerifier(public_key=keys.public_key, issuer=ISSUER, audience=AUDIENCE))
    async with serving(create_app(service, auth=auth), Settings(_env_file=None, data_dir=tmp_path)) as url:
        yield url, service


async def salary_run(url: str, token: str, people: Any, user_id: str | None = None) -> dict[str, Any]:
    args = {"query": f"What does {people.employee_name} earn?", "routine_id": "hr.salary", "mode": "bound",
            "inputs": {"employee_name": people.employee_name, "department": people.department}}
    if user_id is not None:
        args["user_id"] = user_id
    async with client(url, token) as mcp:
        return (await mcp.call_tool("run_routine", args)).structured_content


def tools_of(run: dict[str, Any]) -> list[str]:
    return [s["tool"] for s in run["steps"]]


async def test_the_user_comes_from_the_token_not_from_an_argument(hr_server, people) -> None:
    """An employee was refused a salary, then got it by passing an HR user's id. Now the id is the token's."""
    url, service = hr_server
    own = await salary_run(url, "tok-staff", people)
    assert "get_salary_band" in tools_of(own) and "get_salary" not in tools_of(own)
    with pytest.raises(ToolError, match=f"user_id '{people.hr_user}' was refused: the current user comes from "
                                        f"your credentials \\(this token stands for user '{people.staff_user}'\\)"):
        await salary_run(url, "tok-staff", people, user_id=people.hr_user)
    assert tools_of(await salary_run(url, "tok-staff", people, user_id=people.staff_user)) == tools_of(own)
    with pytest.raises(ToolError, match="this token stands for no user"):
        await salary_run(url, "tok-anon", people, user_id=people.hr_user)
    users = {r["user_id"] for r in (service.runlog.get_run(x["id"]) for x in service.runlog.list_runs())}
    assert users == {people.staff_user}


async def test_a_jwt_sub_is_the_user_and_act_as_is_a_scope(hr_server, people, keys) -> None:
    url, _ = hr_server
    hr_token = keys.create_token(subject=people.hr_user, issuer=ISSUER, audience=AUDIENCE)
    assert "get_salary" in tools_of(await salary_run(url, hr_token, people))
    with pytest.raises(ToolError, match="was refused"):
        await salary_run(url, keys.create_token(subject=people.staff_user, issuer=ISSUER, audience=AUDIENCE),
                         people, user_id=people.hr_user)
    assert "get_salary" in tools_of(await salary_run(url, "tok-frontend", people, user_id=people.hr_user))


async def test_saving_and_deleting_routines_need_the_write_scope(hr_server, hr_routines, keys) -> None:
    url, service = hr_server
    data = hr_routines["hr.leave"].model_dump(exclude_none=True, exclude={"version"})
    writer = keys.create_token(subject="ops", issuer=ISSUER, audience=AUDIENCE, scopes=["routines:write"])
    for token in ("tok-staff", "tok-frontend", keys.create_token(subject="x", issuer=ISSUER, audience=AUDIENCE)):
        async with client(url, token) as mcp:
            with pytest.raises(ToolError, match="save_routine needs the 'routines:write' scope"):
                await mcp.call_tool("save_routine", {"routine": data})
            with pytest.raises(ToolError, match="delete_routine needs the 'routines:write' scope"):
                await mcp.call_tool("delete_routine", {"routine_id": "hr.salary"})
            with pytest.raises(ToolError, match="distill_dataset needs the 'datasets:write' scope"):
                await mcp.call_tool("distill_dataset", {"scenario": "hr"})
            with pytest.raises(ToolError, match="plan_routine with save=true needs the 'routines:write' scope"):
                await mcp.call_tool("plan_routine", {"draft": "x", "save": True})
    assert service.store.ids() == ["hr.salary"]
    for token in ("tok-admin", writer):
        async with client(url, token) as mcp:
            await mcp.call_tool("save_routine", {"routine": data})
            await mcp.call_tool("delete_routine", {"routine_id": "hr.leave"})
    assert service.store.ids() == ["hr.salary"]


# ---- item 7: JWT lifetime -------------------------------------------------------------------------------
@pytest.mark.parametrize(("claims", "accepted"), [
    ({"sub": "a", "exp": "soon"}, False),
    ({"sub": "a"}, False),                                                  # no exp: would never expire
    ({"sub": "a", "exp": 4_000_000_000, "nbf": time.time() + 3600}, False),  # not valid for another hour
    ({"sub": "a", "exp": 4_000_000_000, "nbf": time.time() - 60}, True),
    ({"sub": "a", "exp": 4_000_000_000, "nbf": time.time() + 5}, True),      # within the clock-skew leeway
], ids=["exp-not-a-time", "no-exp", "future-nbf", "past-nbf", "nbf-within-leeway"])
async def test_a_jwt_needs_exp_and_no_future_nbf(hr_server, keys, claims: dict[str, Any], accepted: bool) -> None:
    url, _ = hr_server
    response = await post(url, {"authorization": f"Bearer {signed(keys, claims)}"})
    assert response.status_code == (200 if accepted else 401)


# ---- item 1: distill_dataset ----------------------------------------------------------------------------
def hostile_scenario(root: Path, marker: Path) -> Path:
    """A scenario directory whose 'server' is a command that leaves ``marker`` behind."""
    folder = root / "evil"
    (folder / "routines").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "queries_train.jsonl").write_text(json.dumps({"id": "q1", "query": "x", "routine_id": "r"}))
    shutil.copy(Path(__file__).parents[2] / "routines" / "examples" / "salary.json", folder / "routines" / "r.json")
    command = {"command": sys.executable, "args": ["-c", f"open({str(marker)!r}, 'w').write('ran')"]}
    (folder / "scenario.json").write_text(json.dumps({"name": "evil", "servers": {"mcpServers": {"x": command}}}))
    return folder


@pytest.mark.parametrize("form", ["absolute", "relative"])
async def test_distill_runs_no_scenario_given_as_a_path(make_service, tmp_path, monkeypatch, form: str) -> None:
    marker = tmp_path / "pwned"
    folder = hostile_scenario(tmp_path / "elsewhere", marker)
    monkeypatch.chdir(tmp_path / "elsewhere")
    given = str(folder) if form == "absolute" else "../elsewhere/evil"
    async with Client(create_app(make_service())) as mcp:
        with pytest.raises(ToolError, match="scenario must be the name of a built-in or registered scenario"):
            await mcp.call_tool("distill_dataset", {"scenario": given})
        with pytest.raises(ToolError, match="no scenario 'evil'; available: (cfb, )?hr"):
            await mcp.call_tool("distill_dataset", {"scenario": "evil"})
    await anyio.sleep(0.5)
    assert not marker.exists()


async def test_a_registered_scenario_runs_by_name(make_service, tmp_path) -> None:
    marker = tmp_path / "ran"
    folder = hostile_scenario(tmp_path / "registered", marker)  # the operator chose to trust this one
    async with Client(create_app(make_service(scenario_dirs=str(folder)))) as mcp:
        result = await mcp.call_tool("distill_dataset", {"scenario": "evil"}, raise_on_error=False)
    assert marker.exists()  # its server was started (and, being no MCP server, failed)
    assert result.is_error or result.structured_content["kept"] == 0


@pytest.mark.parametrize("out_dir", ["../../escaped", "{tmp}/escaped", "a/../../../escaped"])
async def test_distill_writes_only_under_the_datasets_folder(make_service, tmp_path, out_dir: str) -> None:
    out_dir = out_dir.format(tmp=tmp_path)
    service = make_service()
    async with Client(create_app(service)) as mcp:
        with pytest.raises(ToolError, match=f"out_dir '{out_dir}' is outside the datasets folder"):
            await mcp.call_tool("distill_dataset", {"scenario": "hr", "limit": 1, "out_dir": out_dir})
    assert not (tmp_path / "escaped").exists()
    assert not (service.settings.home / "datasets").exists()


def test_out_dir_names_resolve_inside_the_datasets_folder(tmp_path) -> None:
    from server.limits import dataset_dir

    settings = Settings(_env_file=None, data_dir=tmp_path)
    root = (tmp_path / "datasets").resolve()
    assert dataset_dir(None, "hr-train", settings) == root / "hr-train"
    assert dataset_dir("v2", "hr-train", settings) == root / "v2"
    assert dataset_dir(str(root / "v3"), "hr-train", settings) == root / "v3"
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "link").symlink_to(tmp_path.parent)
    with pytest.raises(CallerError, match="outside the datasets folder"):
        dataset_dir("link/x", "hr-train", settings)


# ---- item 8: the smaller ones ---------------------------------------------------------------------------
async def test_a_routine_with_a_step_gap_is_not_saved(make_service) -> None:
    gap = {"id": "gap", "name": "Gap", "steps": [
        {"step": "1", "name": "a", "tool": "get_user_profile", "args": {"user_id": "{{system.user_id}}"}},
        {"step": "7", "name": "b", "tool": "summarize", "type": "finish"}]}
    service = make_service()
    async with Client(create_app(service)) as mcp:
        with pytest.raises(ToolError, match=r"main steps are numbered \[1, 7\]; number them 1..n without gaps"):
            await mcp.call_tool("save_routine", {"routine": gap})
    assert service.store.ids() == []


async def test_data_files_are_for_their_owner_only(make_service, hr_routines, tmp_path) -> None:
    old = os.umask(0o022)  # a permissive umask, as on most machines
    try:
        service = make_service(tmp_path / "fresh")
        await service.save(hr_routines["hr.salary"].model_dump(exclude_none=True, exclude={"version"}))
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "fresh").iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"routines.sqlite", "runs.sqlite"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path.name, oct(path.stat().st_mode))
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) & 0o077 == 0


async def test_model_mode_without_a_model_refuses_before_retrieval(make_service, monkeypatch) -> None:
    service = make_service()  # executor backend: none

    def no_retrieval(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("retrieval ran")

    monkeypatch.setattr(service, "retrieve", no_retrieval)
    monkeypatch.setattr(service, "retriever", no_retrieval)
    async with Client(create_app(service)) as mcp:
        with pytest.raises(ToolError, match="mode 'model' needs an executor model, and ROUTINE_EXECUTOR_BACKEND is 'none'"):
            await mcp.call_tool("run_routine", {"query": "what does Ada earn?", "mode": "model"})


class StalledBackend(BaseBackend):
    """A model that never answers (the client gives up first)."""

    name = "stalled"

    def __init__(self) -> None:
        self.asked = anyio.Event()

    async def complete(self, messages: Sequence[Message], *, constraint: Constraint | None = None,
                       max_tokens: int = 512) -> Completion:
        self.asked.set()
        await anyio.sleep(60)
        raise AssertionError("not reached")


async def test_a_client_that_goes_away_is_a_cancelled_run_not_an_internal_error(make_service, hr_routines, people) -> None:
    backend = StalledBackend()
    service = make_service(executor=backend, executor_backend="local")
    await service.save(hr_routines["hr.salary"].model_dump(exclude_none=True, exclude={"version"}))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: service.run("What does Ada earn?", routine_id="hr.salary", mode="model",
                                          user_id=people.staff_user, inputs={"employee_name": "Ada", "department": "HR"}))
        with anyio.fail_after(10):
            await backend.asked.wait()
        tg.cancel_scope.cancel()
    (run,) = service.runlog.list_runs()
    assert run["status"] == "cancelled"
    assert run["error"] == "cancelled: the client disconnected or cancelled the call"
