"""Load and fault benchmark (issue 15): ``routine serve --http`` on 127.0.0.1 with the HR server behind it.

    .venv/bin/python benchmarks/bench_load.py            # writes docs/benchmarks/load.json
    .venv/bin/python benchmarks/bench_load.py --quick    # N = 10 and 50 only, fewer saves

1. **Concurrent bound runs** at N = 10, 50, 100: N MCP clients over HTTP each run ``hr.salary`` (bound mode)
   for a different employee at the same time. Reported: errors, wall time, latency percentiles, and leaks
   (a run whose trajectory names another run's employee).
2. **kill -9 of the downstream mid-run**: 30 runs in flight, then the HR server process is killed. Each run
   either finishes or fails with a clear error; none may be reported as done twice. The HR tools carry no
   ``idempotentHint``, so a call in flight when the server dies is not repeated (docs/security.md).
   Reported: finished, failed (with their distinct error messages), and the runs after the restart.
3. **kill -9 of the server during saves**: clients save new versions of a Routine as fast as they can; the
   server is killed mid-stream and restarted. Every save the server acknowledged must be in the store with
   its content, and SQLite's ``integrity_check`` must say ``ok``.

The server runs with the bound executor only (``ROUTINE_EXECUTOR_BACKEND=none``): no model time is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from routines.scenario import Scenario
from scenarios.hr.db import build_database

OUT = ROOT / "docs" / "benchmarks" / "load.json"
TOKEN = "tok-bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``routine serve --http`` as a child process."""

    def __init__(self, home: Path, user: str) -> None:
        self.home, self.port = home, free_port()
        self.env = {**os.environ, "ROUTINE_DATA_DIR": str(home), "ROUTINE_SERVERS_FILE": str(home / "servers.json"),
                    "ROUTINE_EXECUTOR_BACKEND": "none", "ROUTINE_AUTH_TOKENS": f"{TOKEN} {user} routines:write",
                    "FASTMCP_LOG_LEVEL": "WARNING"}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> Server:
        with open(self.home / "server.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--http", "--port", str(self.port)],
                                         env=self.env, cwd=self.home, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start; see server.log")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def downstream_pids(self) -> list[int]:
        assert self.proc is not None
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid and b"scenarios.hr" in cmdline:
                found.append(int(stat.parent.name))
        return found


def client(server: Server) -> Client:
    return Client(StreamableHttpTransport(server.url, auth=TOKEN), timeout=120)


def employees(db: Path, n: int) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "select e.full_name, d.name from employees e join departments d on d.department_id = e.department_id "
            "where e.status = 'active' and (select count(*) from employees x where x.full_name = e.full_name) = 1 "
            "order by e.employee_id limit ?", [n]).fetchall()
    finally:
        con.close()


async def one_run(server: Server, name: str, department: str) -> dict[str, Any]:
    args = {"query": f"What does {name} earn?", "routine_id": "hr.salary", "mode": "bound",
            "inputs": {"employee_name": name, "department": department}}
    started = time.perf_counter()
    try:
        async with client(server) as mcp:
            result = await mcp.call_tool("run_routine", args, raise_on_error=False)
    except Exception as exc:  # noqa: BLE001 - a benchmark records every failure, whatever its kind
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200], "s": time.perf_counter() - started}
    out = result.structured_content or {}
    if result.is_error:
        text = result.content[0].text if result.content else "?"
        return {"ok": False, "error": text[:200], "s": time.perf_counter() - started}
    searched = [s["arguments"].get("name") for s in out.get("steps", []) if s["tool"] == "search_employee"]
    return {"ok": True, "leak": searched != [name], "s": time.perf_counter() - started}


async def many(server: Server, people: list[tuple[str, str]], on_started: Any = None) -> tuple[list[dict[str, Any]], float]:
    results: list[dict[str, Any]] = []

    async def run(name: str, department: str) -> None:
        results.append(await one_run(server, name, department))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for name, department in people:
            tg.start_soon(run, name, department)
        if on_started is not None:
            await on_started()
    return results, time.perf_counter() - started


def summary(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    times = sorted(r["s"] for r in results if r["ok"])
    q = statistics.quantiles(times, n=20) if len(times) >= 2 else times * 19
    return {"runs": len(results), "ok": sum(r["ok"] for r in results), "errors": sum(not r["ok"] for r in results),
            "leaks": sum(bool(r.get("leak")) for r in results), "wall_s": round(wall, 2),
            "runs_per_s": round(len(results) / wall, 1), "p50_s": round(statistics.median(times), 2) if times else None,
            "p95_s": round(q[18], 2) if times else None, "max_s": round(times[-1], 2) if times else None,
            "error_messages": sorted({re.sub(r"run [0-9a-f]+ of", "run <id> of", r["error"])
                                      for r in results if not r["ok"]})[:5]}


async def concurrency(server: Server, people: list[tuple[str, str]], sizes: list[int]) -> dict[str, Any]:
    out = {}
    for n in sizes:
        results, wall = await many(server, people[:n])
        out[str(n)] = summary(results, wall)
        print(f"  N={n}: {out[str(n)]}", flush=True)
    return out


async def downstream_kill(server: Server, people: list[tuple[str, str]]) -> dict[str, Any]:
    killed: list[int] = []

    async def kill_soon() -> None:
        await anyio.sleep(0.5)
        for pid in server.downstream_pids():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    results, wall = await many(server, people[:30], on_started=kill_soon)
    after, after_wall = await many(server, people[30:40])
    return {"in_flight": summary(results, wall), "killed_pids": len(killed),
            "after_restart": summary(after, after_wall)}


async def saves_then_kill(server: Server, routine: dict[str, Any], seconds: float) -> dict[str, Any]:
    acknowledged: dict[int, str] = {}
    failures = 0

    async def saver(worker: int) -> None:
        nonlocal failures
        i = 0
        try:
            async with client(server) as mcp:
                while True:
                    i += 1
                    text = f"Load test save {worker}-{i}."
                    out = (await mcp.call_tool("save_routine", {"routine": routine | {"description": text}})
                           ).structured_content
                    acknowledged[out["version"]] = text
        except Exception:  # noqa: BLE001 - the server is killed under it: this client's last save is unanswered
            failures += 1

    async with anyio.create_task_group() as tg:
        for w in range(4):
            tg.start_soon(saver, w)
        await anyio.sleep(seconds)
        server.kill()
    server.start()
    async with client(server) as mcp:
        missing = []
        for version, text in acknowledged.items():
            got = (await mcp.call_tool("get_routine", {"routine_id": routine["id"], "version": version},
                                       raise_on_error=False))
            if got.is_error or got.structured_content["description"] != text:
                missing.append(version)
    con = sqlite3.connect(server.home / "routines.sqlite")
    try:
        integrity = con.execute("pragma integrity_check").fetchone()[0]
    finally:
        con.close()
    return {"acknowledged": len(acknowledged), "lost": len(missing), "clients_cut_off": failures,
            "integrity_check": integrity}


async def main_async(quick: bool) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-load-"))
    scenario = Scenario.load("hr")
    db = build_database(home / "hr.sqlite")
    (home / "servers.json").write_text(json.dumps(scenario.servers(home)))
    con = sqlite3.connect(db)
    hr_user = con.execute("select user_id from users where role = 'hr' and status = 'active' limit 1").fetchone()[0]
    con.close()
    people = employees(db, 120)
    server = Server(home, hr_user).start()
    try:
        salary = scenario.routine_map()["hr.salary"].model_dump(exclude_none=True, exclude={"version"})
        async with client(server) as mcp:
            await mcp.call_tool("save_routine", {"routine": salary})
        sizes = [10, 50] if quick else [10, 50, 100]
        print("concurrent bound runs over HTTP:", flush=True)
        figures: dict[str, Any] = {"concurrent_bound_runs": await concurrency(server, people, sizes)}
        print("kill -9 of the downstream with 30 runs in flight:", flush=True)
        figures["downstream_kill"] = await downstream_kill(server, people)
        print(f"  {figures['downstream_kill']}", flush=True)
        print("kill -9 of the server during saves:", flush=True)
        probe = salary | {"id": "bench.saves"}
        figures["server_kill_during_saves"] = await saves_then_kill(server, probe, 1.0 if quick else 2.0)
        print(f"  {figures['server_kill_during_saves']}", flush=True)
    finally:
        server.kill()
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    figures["command"] = "benchmarks/bench_load.py" + (" --quick" if quick else "")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 10 and 50 only, a shorter save phase")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the figures (JSON)")
    ns = parser.parse_args()
    figures = anyio.run(main_async, ns.quick)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {ns.out}")


if __name__ == "__main__":
    main()
