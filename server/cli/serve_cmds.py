"""``routine serve`` (stdio or streamable HTTP) and ``routine demo`` (the README's main command)."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from server.settings import Settings

log = logging.getLogger(__name__)

def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP instead of stdio.")] = False,
        host: Annotated[str, typer.Option(help="HTTP host.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="HTTP port.")] = 8765,
        insecure: Annotated[bool, typer.Option("--insecure", help="Allow HTTP without auth on a non-loopback host.")] = False,
    ) -> None:
        """Serve the Routine tools over MCP (stdio for Claude Desktop, or HTTP with bearer auth)."""
        from server.app import create_app
        from server.auth import build_auth
        from server.security import http_options

        os.umask(0o077)  # the store, run log and datasets hold what the tools returned: this user only
        settings = Settings()
        if not http:
            create_app(settings=settings).run(transport="stdio", show_banner=False)
            return
        auth = build_auth(settings)
        if auth is None and not _is_loopback(host) and not insecure:
            raise typer.BadParameter(
                f"refusing to serve {host} without auth: set ROUTINE_AUTH_TOKENS (or ROUTINE_AUTH_TOKENS_FILE, "
                "ROUTINE_JWT_PUBLIC_KEY / ROUTINE_JWT_JWKS_URI), or pass --insecure"
            )
        if auth is None:
            log.warning("serving HTTP on %s:%d without auth (loopback only)", host, port)
        if not _is_loopback(host) and not settings.allowed_hosts:
            log.warning("serving on %s: requests are accepted for loopback names and IP addresses only; set "
                        "ROUTINE_ALLOWED_HOSTS to the names clients use (e.g. mcp.corp.example)", host)
        create_app(settings=settings, auth=auth).run(transport="http", host=host, port=port, show_banner=False,
                                                     **http_options(settings, host))

    @app.command()
    def demo(
        question: Annotated[str | None, typer.Option(help="Ask this instead of the sample question.")] = None,
        user_id: Annotated[str | None, typer.Option("--user-id", help="The asking user (with --question).")] = None,
        mode: Annotated[str, typer.Option(help="model (the trained executor makes every call), hybrid or bound.")] = "model",
        data_dir: Annotated[Path | None, typer.Option(help="Where the demo keeps its data (default: the data "
                                                      "directory, $ROUTINE_DATA_DIR or ~/.routine).")] = None,
    ) -> None:
        """Generate the HR company, start routine-mcp with the HR server behind it, import the HR Routines,
        then retrieve and run a question through a real MCP client on the embedded executor. The data
        directory is left ready for `routine serve`; the last lines are the Claude Desktop entry for it."""
        home = (data_dir or Settings().home).expanduser().absolute()
        anyio.run(_demo, home, question, user_id, mode)


def _echo(text: str = "") -> None:
    typer.echo(text)


def _short(arguments: dict[str, Any], width: int = 100) -> str:
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


async def _demo(home: Path, question: str | None, user_id: str | None, mode: str) -> None:
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    from routines.scenario import Scenario
    from scenarios.hr import build_database

    home.mkdir(parents=True, exist_ok=True)
    scenario = Scenario.load("hr")
    db = home / "hr.sqlite"
    if not db.exists():
        _echo(f"1. Generating the HR company database -> {db}")
        build_database(db)
    else:
        _echo(f"1. HR company database: {db}")
    servers_file = home / "servers.json"
    servers_file.write_text(json.dumps(scenario.servers(home), indent=2), encoding="utf-8")
    if question is None:
        sample = _demo_question(scenario)
        question, user_id = sample["query"], user_id or sample.get("user_id")
    env = {**os.environ, "ROUTINE_DATA_DIR": str(home), "ROUTINE_SERVERS_FILE": str(servers_file),
           "ROUTINE_EXECUTOR_BACKEND": Settings().executor_backend,  # the user's (environment or .env), else local
           "FASTMCP_LOG_LEVEL": "WARNING", "TQDM_DISABLE": "1"}
    if scenario.today and "ROUTINE_TODAY" not in os.environ:  # the HR company's calendar: "June" is its June
        env["ROUTINE_TODAY"] = scenario.today
    server_log = home / "server.log"
    transport = StdioTransport(command=sys.executable, args=["-m", "server", "serve"], env=env, log_file=server_log)
    _echo("2. Starting routine-mcp over stdio with the HR server as its downstream server")
    _echo(f"   (server logs: {server_log})")

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        _echo(f"     {message}")

    async with Client(transport, progress_handler=on_progress, timeout=600) as client:
        tools = [t.name for t in await client.list_tools()]
        _echo(f"   routine-mcp tools: {', '.join(tools)}")
        imported = 0
        for routine in scenario.routines():
            stored = await client.call_tool("list_routines", {})
            known = {r["id"]: r for r in _as_list(stored)}
            if routine.id in known:
                current = await client.call_tool("get_routine", {"routine_id": routine.id})
                if current.structured_content and current.structured_content.get("routine") == routine.model_dump(
                    exclude_none=True, exclude={"version"}
                ) | {"version": known[routine.id]["version"]}:
                    continue
            await client.call_tool("save_routine", {"routine": routine.model_dump(exclude_none=True, exclude={"version"})})
            imported += 1
        _echo(f"3. Imported {imported} HR Routines ({len(scenario.routines())} in the store)")
        from memory.store import STORE_FILE
        from server.cli.memory_cmds import sharpen_scenario_store

        await anyio.to_thread.run_sync(sharpen_scenario_store, home / STORE_FILE, scenario, _echo)
        _echo(f"\n4. Question (user {user_id}): {question}")
        found = (await client.call_tool("retrieve_routine", {"query": question})).structured_content or {}
        if found.get("abstained"):
            _echo(f"   retrieval abstained: {found.get('explanation')}")
            if not found.get("candidates"):
                raise typer.Exit(1)
            # What a calling agent does with an abstention: choose among the candidates, here the closest.
            best = found["candidates"][0]["routine_id"]
            _echo(f"   choosing the closest candidate, {best}, as a calling agent would")
            found["routine"] = (await client.call_tool("get_routine", {"routine_id": best})).structured_content
        else:
            _echo(f"   retrieved {found['routine']['id']} (score {found['score']:.2f}):")
        for line in found["routine"]["text"].splitlines():
            _echo(f"     {line}")
        _echo(f"\n5. Running it ({mode} mode, embedded SmolLM2-135M executor):")
        args: dict[str, Any] = {"query": question, "routine_id": found["routine"]["id"], "mode": mode}
        if user_id:
            args["user_id"] = user_id
        result = await client.call_tool("run_routine", args, raise_on_error=False)
        if result.is_error:
            _echo(f"   run failed: {result.content[0].text if result.content else 'unknown error'}")
            raise typer.Exit(1)
        out = result.structured_content or {}
        if out.get("inputs"):
            _echo(f"   inputs read from the question by the model: {json.dumps(out['inputs'], ensure_ascii=False)}")
        _echo("\n   Trajectory ([model]: the executor model made the call; bound: the arguments the Routine binds,")
        _echo("   whose values win over the model's; [bound]: the Routine made the call without the model):")
        bound = {s["step"]: sorted(s.get("args") or {}) for s in found["routine"]["routine"].get("steps", [])}
        for step in out.get("steps", []):
            keys = bound.get(step["step"]) if step["source"] == "model" else None
            note = f"  bound: {', '.join(keys)}" if keys else ""
            _echo(f"     step {step['step']:6} [{step['source']}] {step['tool']}({_short(step['arguments'])}){note}")
            if step.get("model_arguments"):
                _echo(f"{'':18}the model had written {_short(step['model_arguments'])}")
        _echo(f"\nAnswer: {out.get('answer')}")
        _echo(f"(run {out.get('run_id')}; details: ROUTINE_DATA_DIR={home} routine runs show {out.get('run_id')})")
    _echo(f"\n{CLAUDE_DESKTOP_HEADER}")
    _echo(json.dumps(claude_desktop_config(home, servers_file), indent=2))


CLAUDE_DESKTOP_HEADER = ("6. To use these Routines from Claude Desktop, add this to claude_desktop_config.json "
                         "(Settings > Developer > Edit Config) and restart it:")


def claude_desktop_config(home: Path, servers_file: Path) -> dict[str, Any]:
    """The ``mcpServers`` entry that serves ``home``'s Routines with its downstream servers, with absolute paths
    only: Claude Desktop starts it from ``/`` with a minimal environment (no PATH of ours, no ~ expansion)."""
    script = Path(sys.executable).parent / "routine"  # the venv's script; not resolved, that would leave the venv
    command, args = (str(script), ["serve"]) if script.exists() else (sys.executable, ["-m", "server", "serve"])
    env = {"ROUTINE_DATA_DIR": str(home), "ROUTINE_SERVERS_FILE": str(servers_file)}
    return {"mcpServers": {"routines": {"command": command, "args": args, "env": env}}}


def _as_list(result: Any) -> list[dict[str, Any]]:
    data = result.structured_content
    if isinstance(data, dict) and "result" in data:
        data = data["result"]
    return list(data or [])


def _demo_question(scenario: Any) -> dict[str, Any]:
    """A test question whose Routine branches and whose inputs the model must read from the question: each
    input value appears in the question as written (so the embedded model can copy it; a month said as
    "June" would need a date it cannot know)."""
    queries = scenario.queries("test")
    routines = scenario.routine_map()
    fitting = []
    for q in queries:
        r = routines.get(q["routine_id"])
        values = list((q.get("inputs") or {}).values())
        if r is not None and r.has_branches and values and all(
            isinstance(v, str) and v.lower() in q["query"].lower() for v in values
        ):
            fitting.append(q)
    return min(fitting, key=lambda q: len(q["inputs"])) if fitting else queries[0]  # fewest values to read
