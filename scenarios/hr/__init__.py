"""The built-in HR enterprise scenario (design section 6, paper section 4.1).

A downstream MCP tool server over a generated company database (8,240 employees), seven expert Routines,
their rough user drafts, train/test query sets and gold trajectories. Nothing in ``server/``,
``routines/`` or ``memory/`` imports this package; tests, benchmarks and the demo do.

    from scenarios.hr import build_database, create_server, load_routines, load_queries, load_gold
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scenarios.hr.db import build_database
from scenarios.hr.gold import ROUTINES_DIR, load_routines, read_jsonl
from scenarios.hr.queries import DATA_DIR, SPLITS
from scenarios.hr.server import FREE_TEXT_PARAMS, create_server

DRAFTS_DIR = Path(__file__).parent / "drafts"


def default_db_path() -> Path:
    """``$ROUTINE_DATA_DIR/hr.sqlite``, by default ``~/.routine/hr.sqlite``."""
    return Path(os.environ.get("ROUTINE_DATA_DIR") or Path.home() / ".routine").expanduser() / "hr.sqlite"


def ensure_database(path: str | Path | None = None, seed: int = 7) -> Path:
    """The database at ``path`` (default :func:`default_db_path`), built first if it does not exist."""
    target = Path(path).expanduser() if path else default_db_path()
    return target if target.exists() else build_database(target, seed=seed)


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
    return split


def load_queries(split: str) -> list[dict[str, Any]]:
    """Query records of ``split`` ('train' or 'test')."""
    return read_jsonl(DATA_DIR / f"queries_{_split(split)}.jsonl")


def load_gold(split: str) -> list[dict[str, Any]]:
    """Gold trajectories of ``split``: the query record plus ``calls`` and ``answer``."""
    return read_jsonl(DATA_DIR / f"gold_{_split(split)}.jsonl")


def load_draft(routine_id: str) -> str:
    """The rough user draft an expert first wrote for a Routine (the planner's input)."""
    path = DRAFTS_DIR / f"{routine_id}.md"
    if not path.exists():
        raise FileNotFoundError(f"no draft for {routine_id!r}; drafts exist for: "
                                + ", ".join(sorted(p.stem for p in DRAFTS_DIR.glob("*.md"))))
    return path.read_text(encoding="utf-8")


__all__ = [
    "DRAFTS_DIR", "FREE_TEXT_PARAMS", "ROUTINES_DIR", "build_database", "create_server", "default_db_path",
    "ensure_database", "load_draft", "load_gold", "load_queries", "load_routines",
]
