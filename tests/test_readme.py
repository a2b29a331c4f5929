"""The README's commands work as written: the two set-up commands, the example and its rendered form, and
the Docker image installing the project the same way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from routines.model import Routine
from routines.render import render_routine

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


def test_claude_desktop_snippet_is_valid_json() -> None:
    snippet = next(b for b in _blocks("json") if "mcpServers" in b)
    config = json.loads(snippet)
    entry = config["mcpServers"]["routines"]
    assert entry["args"] == ["serve"]


@pytest.mark.model
def test_demo_command_runs_end_to_end(tmp_path: Path) -> None:
    """`make demo` is `routine demo` once the environment exists: run it for real on a fresh data dir."""
    env = {**os.environ, "ROUTINE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [*ROUTINE, "demo", "--data-dir", str(tmp_path / "demo")], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "Imported 7 HR Routines" in out
    assert "Trajectory:" in out and "summarize(" in out
    answer = out.split("Answer:", 1)[1].splitlines()[0]
    assert len(answer.strip()) > 20
