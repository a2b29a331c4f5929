"""What an MCP caller may ask the server for (docs/security.md): how much text and how many steps, which
scenarios ``distill_dataset`` may run and where it may write. Everything here raises ``CallerError`` with a
message that says what to change; the limits come from ``Settings``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from routines.errors import CallerError
from routines.model import Routine
from routines.scenario import BUILTIN_ROOT, Scenario
from server.settings import Settings

SCENARIO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_text(what: str, value: str, limit: int, setting: str) -> None:
    if len(value) > limit:
        raise CallerError(f"{what} is {len(value):,} characters long; at most {limit:,} are accepted "
                          f"({setting}); shorten it")


def check_routine_data(data: Any, settings: Settings) -> None:
    """Cheap checks on a Routine as sent, before it is parsed: the number of steps and the JSON size."""
    steps = data.steps if isinstance(data, Routine) else data.get("steps") if isinstance(data, dict) else data
    if isinstance(steps, list) and len(steps) > settings.max_routine_steps:
        raise CallerError(f"the Routine has {len(steps):,} steps; at most {settings.max_routine_steps} are accepted "
                          "(ROUTINE_MAX_ROUTINE_STEPS); split it into several Routines")
    if not isinstance(data, Routine):
        size = len(json.dumps(data, ensure_ascii=False, default=str))
        if size > settings.max_request_bytes:
            raise CallerError(f"the Routine is {size:,} bytes of JSON; at most {settings.max_request_bytes:,} are "
                              "accepted (ROUTINE_MAX_REQUEST_BYTES)")


def check_routine_text(routine: Routine, settings: Settings) -> None:
    """Every name, description and input/output text within ``max_text_chars``."""
    limit = settings.max_text_chars
    check_text("the Routine's name", routine.name, limit, "ROUTINE_MAX_TEXT_CHARS")
    check_text("the Routine's description", routine.description, limit, "ROUTINE_MAX_TEXT_CHARS")
    for step in routine.steps:
        for field in ("name", "description", "input", "output", "when"):
            value = getattr(step, field)
            if isinstance(value, str):
                check_text(f"step {step.step}'s {field}", value, limit, "ROUTINE_MAX_TEXT_CHARS")


def scenario_dirs(settings: Settings) -> dict[str, Path]:
    """Scenarios ``distill_dataset`` may run, by name: the built-in ones and ``ROUTINE_SCENARIO_DIRS``."""
    found: dict[str, Path] = {}
    folders = sorted(BUILTIN_ROOT.iterdir()) if BUILTIN_ROOT.is_dir() else []
    for folder in folders + [Path(p).expanduser() for p in (settings.scenario_dirs or "").split(",") if p.strip()]:
        manifest = folder / "scenario.json"
        if not manifest.is_file():
            continue
        try:
            name = json.loads(manifest.read_text(encoding="utf-8")).get("name") or folder.name
        except (OSError, json.JSONDecodeError, AttributeError):
            name = folder.name
        found.setdefault(str(name), folder.resolve())
    return found


def named_scenario(name: str, settings: Settings) -> Scenario:
    """A scenario by name only: a path (which would let a caller start any command a ``scenario.json`` names)
    is refused."""
    known = scenario_dirs(settings)
    if not SCENARIO_NAME.match(name) or name in (".", ".."):
        raise CallerError(f"scenario must be the name of a built-in or registered scenario ({', '.join(known) or 'none'}), "
                          f"not a path; got {name!r}. The server's operator registers more with ROUTINE_SCENARIO_DIRS")
    if name not in known:
        raise CallerError(f"no scenario {name!r}; available: {', '.join(known) or 'none'} (the server's operator "
                          "registers more with ROUTINE_SCENARIO_DIRS)")
    return Scenario.load(known[name])


def dataset_dir(out_dir: str | None, default_name: str, settings: Settings) -> Path:
    """Where ``distill_dataset`` writes: ``out_dir`` inside ``<data dir>/datasets`` (a relative name, or an
    absolute path inside it), else ``<data dir>/datasets/<default_name>``."""
    root = (settings.home / "datasets").resolve()
    if not out_dir:
        return root / default_name
    given = Path(out_dir)
    target = (given if given.is_absolute() else root / given).resolve()
    if target != root and root not in target.parents:
        raise CallerError(f"out_dir {out_dir!r} is outside the datasets folder {root}; give a folder name such as "
                          f"'{default_name}' (it is created there)")
    return target
