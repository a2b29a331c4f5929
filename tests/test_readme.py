"""The README's commands work as written: the two set-up commands, the example and its rendered form, the
Docker image installing the project the same way, and what `make demo` leaves behind used as the README and
docs/hr-scenario.md say (the Claude Desktop entry and the HR server's entry started from / with a minimal
environment, the sub-agent snippet against the served demo data)."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from routines.model import Routine
from routines.render import render_routine
from server.cli.serve_cmds import CLAUDE_DESKTOP_HEADER

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ROUTINE = [str(Path(sys.executable).parent / "routine")]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.DOTALL)


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the Quick start section has a bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_make_commands_with_targets() -> None:
    commands = _quick_start_commands()
    assert commands == ["make demo", "make test"]
    for command in commands:
        dry = subprocess.run(["make", "-n", *command.split()[1:]], cwd=ROOT, capture_output=True, text=True, check=True)
        assert dry.returncode == 0
    assert "pytest" in subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    assert "routine demo" in subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, check=False).stdout


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in script


def test_dockerfile_installs_the_project_like_the_readme() -> None:
    docker = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^RUN make install\b", docker, re.MULTILINE), "the image runs the Makefile's install step"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: \$\(STAMP\)", makefile, re.MULTILINE) and re.search(r"^test: \$\(STAMP\)", makefile, re.MULTILINE)
    assert re.search(r"^install: \$\(STAMP\)", makefile, re.MULTILINE), "make install is the step demo and test share"
    assert 'ENTRYPOINT ["routine"]' in docker


def test_readme_example_is_the_example_file_and_renders_as_shown() -> None:
    example = json.loads(_blocks("json")[0])
    routine = Routine.model_validate(example)
    shown = next(b for b in _blocks("text") if b.startswith("Step 1."))
    assert render_routine(routine) == shown.strip()
    on_disk = Routine.from_file(ROOT / "routines" / "examples" / "salary.json")
    assert render_routine(on_disk) == shown.strip()
    cli = subprocess.run([*ROUTINE, "render", "routines/examples/salary.json"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == shown.strip()


def test_readme_settings_exist() -> None:
    from server.settings import Settings

    fields = {f"ROUTINE_{name.upper()}" for name in Settings.model_fields}
    for name in set(re.findall(r"ROUTINE_[A-Z_]+", README)):
        assert name in fields, f"README mentions {name}, which is not a setting"


# ---- what `make demo` leaves behind, used as the README says ------------------------------------------
VENV_BIN = Path(sys.executable).parent
MINIMAL_ENV_KEYS = ("LOGNAME", "USER", "SHELL", "TERM")  # with HOME and PATH: what MCP clients pass on
# The demo (run once, by whichever of these tests comes first) builds the company, stores and tunes the
# Routines and runs the embedded model: minutes on a busy 2-core machine.
DEMO_TIMEOUT = pytest.mark.timeout(1200)


def _section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _placeholders(text: str, home: Path) -> str:
    """The README's and docs' placeholders, as on this machine: the repository's virtual environment and the
    home directory the demo ran with."""
    return text.replace("/path/to/routine-mcp/.venv/bin", str(VENV_BIN)).replace("/home/you", str(home))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    home: Path
    """The HOME the demo ran with; its data directory is home/.routine (the default)."""
    out: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """`make demo` is `routine demo` once the environment exists: run it for real, as a new user would, with a
    fresh HOME and no ROUTINE_* settings, so it uses the default data directory."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTINE_")} | {"HOME": str(home)}
    done = subprocess.run([*ROUTINE, "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1100,
                          check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return Demo(home, done.stdout)


@pytest.mark.model
@DEMO_TIMEOUT
def test_demo_command_runs_end_to_end(demo: Demo) -> None:
    out = demo.out
    assert "Imported 7 HR Routines" in out
    assert "Trajectory" in out and "summarize(" in out
    assert ")  bound: " in out  # model mode shows the arguments the Routine enforces
    answer = out.split("Answer:", 1)[1].splitlines()[0]
    assert len(answer.strip()) > 20
    data = demo.home / ".routine"
    assert f"-> {data / 'hr.sqlite'}" in out
    assert {"hr.sqlite", "servers.json", "routines.sqlite"} <= {p.name for p in data.iterdir()}


def _printed_entry(out: str) -> dict:
    tail = out.split(CLAUDE_DESKTOP_HEADER, 1)[1]
    entry, _ = json.JSONDecoder().raw_decode(tail.lstrip())
    return entry


def _started_from_root(entry: dict, home: Path) -> StdioTransport:
    """An mcpServers entry started as Claude Desktop starts it: from /, with a minimal environment."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", **{k: os.environ[k] for k in MINIMAL_ENV_KEYS if k in os.environ}}
    return StdioTransport(entry["command"], entry.get("args", []), env={**env, **entry.get("env", {})}, cwd="/",
                          keep_alive=False)


@pytest.mark.model
@DEMO_TIMEOUT
@pytest.mark.anyio
async def test_claude_desktop_entry_is_what_the_demo_prints_and_works_from_root(demo: Demo) -> None:
    readme_entry = json.loads(_placeholders(next(b for b in _blocks("json") if "mcpServers" in b), demo.home))
    assert _printed_entry(demo.out) == readme_entry
    entry = readme_entry["mcpServers"]["routines"]
    question = "What is Amanda O'Brien's salary? Amanda O'Brien works in Frontline Support Americas."
    async with Client(_started_from_root(entry, demo.home), timeout=300) as client:
        listed = (await client.call_tool("list_routines", {})).structured_content["result"]
        found = (await client.call_tool("retrieve_routine", {"query": question})).structured_content
        run = (await client.call_tool("run_routine", {
            "query": question, "routine_id": "hr.salary", "mode": "bound", "user_id": "U47358",
            "inputs": {"employee_name": "Amanda O'Brien", "department": "Frontline Support Americas"}})).structured_content
    assert len(listed) == 7 and found["routine"]["id"] == "hr.salary"
    assert run["status"] == "finished" and "EUR 41,500" in run["answer"]  # the HR server answered, started from /


@pytest.mark.model
@DEMO_TIMEOUT
@pytest.mark.anyio
async def test_hr_scenario_entry_works_from_root(demo: Demo) -> None:
    doc = (ROOT / "docs" / "hr-scenario.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```json\n(.*?)```", doc, re.DOTALL) if "mcpServers" in b)
    entry = json.loads(_placeholders(block, demo.home))["mcpServers"]["hr"]
    async with Client(_started_from_root(entry, demo.home), timeout=60) as client:
        tools = await client.list_tools()
        profile = (await client.call_tool("get_user_profile", {"user_id": "U46456"})).structured_content
    assert len(tools) == 25 and profile["role"] == "employee"


@pytest.mark.model
@DEMO_TIMEOUT
def test_sub_agent_snippet_against_the_served_demo_data(demo: Demo) -> None:
    section = _section("Use it as a sub-agent")
    command = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1).strip()
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    expected = re.search(r"```text\n(.*?)```", section, re.DOTALL).group(1).strip()
    words = shlex.split(command)
    settings = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    args = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    assert args[:4] == ["routine", "serve", "--http", "--port"] and args[4] in snippet
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTINE_")} | {"HOME": str(demo.home), **settings}
    server = subprocess.Popen([*ROUTINE, *args[1:4], port], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-2000:]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        done = subprocess.run([sys.executable, "-c", snippet.replace(args[4], port)], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, check=False)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected
