"""Every saved version of every Routine: the ``routines`` and ``routine_versions`` tables.

``routines`` holds one row per id with its latest version's name, description and step count;
``routine_versions`` the full JSON of every version with a hash of its content, so saving unchanged content
adds no version. What turns input (a ``Routine``, its JSON data, a bare list of steps, a directory of files)
into a Routine ready to store lives here too, beside the table it goes into.

:class:`RoutineVersions` does not open transactions: its writes run inside the caller's
(:class:`memory.store.ProcedureStore`'s, which also counts the write in ``meta``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlite_utils import Database

from memory.errors import InvalidRoutineError, RoutineNotFoundError
from memory.schema import now
from routines.model import Routine
from routines.validate import validate

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def slugify(text: str) -> str:
    """An id from a name: ``"Salary enquiry"`` -> ``"salary-enquiry"``."""
    slug = re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-._")
    return slug


def content_hash(routine: Routine) -> str:
    """Hash of a Routine's content, version number excluded."""
    data = routine.model_dump(exclude_none=True, exclude={"version"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def file_name(routine_id: str) -> str:
    """The export file name of a Routine id (``/`` of flattened variants becomes ``__``)."""
    return routine_id.replace("/", "__") + ".json"


@dataclass(frozen=True)
class RoutineInfo:
    """One stored Routine as listed: its latest version's summary."""

    id: str
    name: str
    description: str
    version: int
    steps: int
    updated_at: str


def prepare_routine(
    data: Routine | dict[str, Any] | list[Any], *, tools: Sequence[Any] = (), source: str = ""
) -> Routine:
    """The Routine parsed, with its id (derived from its name when it has none), validated (with ``tools``,
    tool names and arguments too); raises :class:`InvalidRoutineError` naming ``source`` when given. Touches
    no database."""
    where = f"{source}: " if source else ""
    try:
        routine = data if isinstance(data, Routine) else Routine.from_data(data)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()[:6])
        raise InvalidRoutineError(f"{where}not a Routine: {details}") from None
    routine_id = routine.id or slugify(routine.name)
    if not routine_id:
        raise InvalidRoutineError(f"{where}the Routine has neither an id nor a name; give it one of them")
    if not ID_RE.match(routine_id):
        raise InvalidRoutineError(
            f"{where}Routine id {routine_id!r} may only hold letters, digits and . _ / - (e.g. 'hr.salary')",
            routine_id=routine_id,
        )
    report = validate(routine, tools)
    if not report.ok:
        lines = "\n".join(f"  {f}" for f in report.errors)
        raise InvalidRoutineError(
            f"{where}Routine {routine_id!r} was not saved, it has errors:\n{lines}",
            routine_id=routine_id,
            findings=report.errors,
        )
    return routine.model_copy(update={"id": routine_id})


def prepare_dir(directory: str | Path, *, tools: Sequence[Any] = ()) -> list[Routine]:
    """Every ``*.json`` Routine of a directory, prepared (:func:`prepare_routine`), in file name order. A file
    without id or name gets the file name (without ``.json``, ``__`` read as ``/``) as id; a bare list of
    steps (the paper's format) is a Routine of those steps."""
    if not Path(directory).is_dir():
        raise InvalidRoutineError(f"{directory} is not a directory of Routine JSON files")
    prepared = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidRoutineError(f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if isinstance(data, list):
            data = {"steps": data}
        if isinstance(data, dict) and not data.get("id") and not data.get("name"):
            data["id"] = path.stem.replace("__", "/")
        prepared.append(prepare_routine(data, tools=tools, source=path.name))
    return prepared


class RoutineVersions:
    """The Routines of one store database, every version kept."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- reading --------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.db.execute("select count(*) from routines").fetchone()[0])

    def contains(self, routine_id: object) -> bool:
        return self.db.execute("select 1 from routines where id = ?", [routine_id]).fetchone() is not None

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("select id from routines order by id")]

    def list(self) -> list[RoutineInfo]:
        rows = self.db.execute(
            "select id, name, description, latest_version, n_steps, updated_at from routines order by id"
        )
        return [RoutineInfo(*row) for row in rows]

    def get(self, routine_id: str, version: int | None = None) -> Routine:
        """The latest version of a Routine, or the given one."""
        if version is None:
            row = self.db.execute(
                "select v.json from routines r join routine_versions v "
                "on v.routine_id = r.id and v.version = r.latest_version where r.id = ?",
                [routine_id],
            ).fetchone()
        else:
            row = self.db.execute(
                "select json from routine_versions where routine_id = ? and version = ?", [routine_id, version]
            ).fetchone()
        if row is None:
            if version is not None and self.contains(routine_id):
                raise RoutineNotFoundError(routine_id, version)
            raise RoutineNotFoundError(routine_id, known=self.ids())
        return Routine.model_validate_json(row[0])

    def versions(self, routine_id: str) -> list[int]:
        rows = self.db.execute(
            "select version from routine_versions where routine_id = ? order by version", [routine_id]
        ).fetchall()
        if not rows:
            raise RoutineNotFoundError(routine_id, known=self.ids())
        return [r[0] for r in rows]

    def latest(self, ids: Iterable[str] | None = None) -> Iterator[Routine]:
        """The latest version of every Routine (or of the given ids), in id order."""
        sql = ("select v.json from routines r join routine_versions v "
               "on v.routine_id = r.id and v.version = r.latest_version")
        if ids is None:
            for (text,) in self.db.execute(sql + " order by r.id"):
                yield Routine.model_validate_json(text)
            return
        wanted = sorted(ids)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = sql + f" where r.id in ({','.join('?' * len(chunk))}) order by r.id"
            for (text,) in self.db.execute(query, chunk):
                yield Routine.model_validate_json(text)

    # ---- writing (inside the caller's transaction) ------------------------------------------------------
    def insert(self, routine: Routine) -> Routine:
        """Store a prepared Routine as its next version (content identical to the latest version: nothing is
        stored); return it with its version."""
        assert routine.id is not None
        digest = content_hash(routine)
        stamp = now()
        row = self.db.execute(
            "select r.latest_version, v.content_hash from routines r join routine_versions v "
            "on v.routine_id = r.id and v.version = r.latest_version where r.id = ?",
            [routine.id],
        ).fetchone()
        if row is not None and row[1] == digest:
            log.info("Routine %s unchanged, still version %s", routine.id, row[0])
            return routine.model_copy(update={"version": row[0]})
        version = 1 if row is None else row[0] + 1
        saved = routine.model_copy(update={"version": version})
        self.db["routine_versions"].insert(
            {"routine_id": saved.id, "version": version, "json": saved.model_dump_json(exclude_none=True),
             "content_hash": digest, "created_at": stamp}
        )
        summary = {"name": saved.name, "description": saved.description, "latest_version": version,
                   "n_steps": len(saved.steps), "updated_at": stamp}
        if row is None:
            self.db["routines"].insert({"id": saved.id, "created_at": stamp, **summary})
        else:
            self.db["routines"].update(saved.id, summary)
        log.info("saved Routine %s version %d", saved.id, version)
        return saved

    def remove(self, routine_id: str) -> int:
        """Remove a Routine with all its versions (:class:`RoutineNotFoundError` when there is none); return
        how many versions were removed."""
        n = len(self.versions(routine_id))
        self.db.execute("delete from routine_versions where routine_id = ?", [routine_id])
        self.db.execute("delete from routines where id = ?", [routine_id])
        return n

    # ---- export ---------------------------------------------------------------------------------------
    def export_dir(self, directory: str | Path) -> list[Path]:
        """Write the latest version of every Routine to ``<id>.json`` in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for routine in self.latest():
            assert routine.id is not None
            path = out / file_name(routine.id)
            path.write_text(routine.to_json() + "\n", encoding="utf-8")
            written.append(path)
        return written
