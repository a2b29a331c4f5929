"""The CFB replay server: the 40 ComplexFuncBench tools answering from the recorded responses.

A call is answered by the response recorded for (case, tool, arguments): the case id is a system parameter
each Routine binds (``{{system.case_id}}``), because the benchmark's responses were recorded live and the
same arguments got different answers in different samples. A call recorded in no case of its own but in
another case gets that case's answer (the lowest case id), so a model that strays to a call recorded
elsewhere still gets a real response; anything else is a tool error that lists what the case recorded.
Every tool is read-only and idempotent. Arguments are checked against the tool's schema.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import jsonschema
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import Tool, ToolResult
from mcp.types import TextContent, ToolAnnotations

from scenarios.cfb.source import CASE_PARAM

logger = logging.getLogger(__name__)

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True)
INSTRUCTIONS = ("Booking.com travel tools from ComplexFuncBench (flights, hotels, car rentals, taxis, "
                "attractions), answering from recorded responses. Pass the case id as case_id in every call.")
SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    case_id TEXT NOT NULL, position INTEGER NOT NULL, tool TEXT NOT NULL, args TEXT NOT NULL,
    response TEXT NOT NULL, PRIMARY KEY (case_id, position));
CREATE INDEX IF NOT EXISTS calls_key ON calls (tool, args, case_id);
"""


def canonical(arguments: dict[str, Any]) -> str:
    """The key text of a call's arguments (without the case id)."""
    rest = {k: v for k, v in arguments.items() if k != CASE_PARAM}
    return json.dumps(rest, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class ReplayStore:
    """The recorded responses in SQLite (``replay.sqlite`` of the build), read a row at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} is missing; build it with `python -m scenarios.cfb --build`")
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    @staticmethod
    def write(path: str | Path, rows: list[tuple[str, int, str, dict[str, Any], Any]]) -> Path:
        """Write ``(case_id, position, tool, arguments, response)`` rows to a fresh database."""
        target = Path(path)
        target.unlink(missing_ok=True)
        with sqlite3.connect(target) as db:
            db.executescript(SCHEMA)
            db.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?)", [
                (case, pos, tool, canonical(args), json.dumps(resp, ensure_ascii=False, separators=(",", ":")))
                for case, pos, tool, args, resp in rows])
        db.close()
        return target

    def answer(self, case: str, tool: str, arguments: dict[str, Any]) -> Any:
        key = canonical(arguments)
        row = self._db.execute("SELECT response FROM calls WHERE tool = ? AND args = ? AND case_id = ? "
                               "ORDER BY position LIMIT 1", (tool, key, case)).fetchone()
        if row is None:
            row = self._db.execute("SELECT response FROM calls WHERE tool = ? AND args = ? ORDER BY case_id, position "
                                   "LIMIT 1", (tool, key)).fetchone()
        if row is None:
            known = [r[0] for r in self._db.execute("SELECT args FROM calls WHERE case_id = ? AND tool = ? "
                                                    "ORDER BY position LIMIT 3", (case, tool))]
            hint = f"; case {case} recorded {tool} with: {'; '.join(known)}" if known else \
                f"; case {case} recorded no {tool} call"
            raise ToolError(f"no recorded response of {tool} for {key}{hint}")
        return json.loads(row[0])

    def close(self) -> None:
        self._db.close()


class ReplayTool(Tool):
    """One recorded tool: checks its arguments against its schema and answers from the store."""

    store: Any = None
    validator: Any = None

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(arguments))
        if error is not None:
            where = ".".join(map(str, error.absolute_path)) or "arguments"
            raise ToolError(f"{self.name}: {where}: {error.message}")
        value = self.store.answer(str(arguments[CASE_PARAM]), self.name, arguments)
        return ToolResult(content=[TextContent(type="text", text=json.dumps(value, ensure_ascii=False))])


def load_tools(data_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(data_dir) / "tools.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; build it with `python -m scenarios.cfb --build`")
    return json.loads(path.read_text(encoding="utf-8"))


def create_server(data_dir: str | Path) -> FastMCP:
    """The replay server over a build folder (``tools.json`` and ``replay.sqlite``)."""
    store = ReplayStore(Path(data_dir) / "replay.sqlite")
    mcp = FastMCP("cfb", instructions=INSTRUCTIONS)
    for spec in load_tools(data_dir):
        schema = spec["inputSchema"]
        mcp.add_tool(ReplayTool(
            name=spec["name"], description=spec["description"], parameters=schema, annotations=READ_ONLY,
            store=store, validator=jsonschema.Draft202012Validator(schema),
        ))
    logger.info("cfb replay server over %s", data_dir)
    return mcp
