"""``ProcedureStore``: Routines in SQLite, every saved version kept, with their embeddings (paper 3.4.1).

Tables (created by the migrations below, each recorded in ``_migrations`` by name, as simonw/llm does):

- ``routines``: one row per id with the latest version's name, description and step count;
- ``routine_versions``: the full JSON of every version, with a hash of its content;
- ``embeddings``: one float32 vector per (Routine, model, text recipe), with the hash of the embedded text
  and the version it was computed from, so unchanged Routines are never embedded twice;
- ``meta``: a ``revision`` counter bumped by every write, so readers can cache cheaply;
- ``examples``: example questions per Routine (say, the questions of a distillation data set), with their
  own vectors in ``example_vectors`` (one per text and model); retrieval blends them into the Routine's score.
- ``negatives``: questions no Routine of this store serves (in-domain requests and off-topic ones), vectors
  in ``example_vectors`` too; retrieval abstains when a question is closer to them than to any Routine.
- ``tuned_models``: embedding-model adapters fine-tuned on this store's Routines, examples and negatives
  (``memory.tuning``); the newest one for a base model is what retrieval embeds with.

Every write runs in one transaction: after a crash a Routine is either fully saved or not at all.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
from pydantic import ValidationError
from sqlite_utils import Database

from memory.errors import InvalidExampleError, InvalidRoutineError, RoutineNotFoundError
from memory.files import private_file
from routines.model import Routine
from routines.validate import validate

log = logging.getLogger(__name__)

STORE_FILE = "routines.sqlite"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")

# ---- migrations ---------------------------------------------------------------------------------------

Migration = Callable[[Database], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration; it runs once per database, in registration order."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_routines(db: Database) -> None:
    db["routines"].create(
        {"id": str, "name": str, "description": str, "latest_version": int, "n_steps": int,
         "created_at": str, "updated_at": str},
        pk="id",
    )
    db["routine_versions"].create(
        {"routine_id": str, "version": int, "json": str, "content_hash": str, "created_at": str},
        pk=("routine_id", "version"),
    )


@migration
def m002_embeddings(db: Database) -> None:
    db["embeddings"].create(
        {"routine_id": str, "model": str, "recipe": str, "version": int, "content_hash": str, "dim": int,
         "vector": bytes, "updated_at": str},
        pk=("routine_id", "model", "recipe"),
    )
    db["embeddings"].create_index(["model", "recipe"])


@migration
def m003_revision(db: Database) -> None:
    db["meta"].create({"key": str, "value": int}, pk="key")
    db["meta"].insert({"key": "revision", "value": 0})


@migration
def m004_examples(db: Database) -> None:
    db["examples"].create(
        {"routine_id": str, "text": str, "text_hash": str, "source": str, "created_at": str},
        pk=("routine_id", "text_hash"),
    )
    db["examples"].create_index(["source"])
    db["example_vectors"].create(
        {"text_hash": str, "model": str, "dim": int, "vector": bytes, "updated_at": str}, pk=("text_hash", "model")
    )


@migration
def m005_negatives(db: Database) -> None:
    db["negatives"].create({"text_hash": str, "text": str, "source": str, "created_at": str}, pk="text_hash")
    db["negatives"].create_index(["source"])


@migration
def m006_tuned_models(db: Database) -> None:
    db["tuned_models"].create(
        {"name": str, "base_model": str, "adapter": bytes, "info": str, "created_at": str}, pk="name"
    )
    db["tuned_models"].create_index(["base_model"])


def migrate(db: Database) -> list[str]:
    """Apply the migrations this database has not seen yet; return their names."""
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    done = {row["name"] for row in db["_migrations"].rows}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with db.atomic():
            fn(db)
            db["_migrations"].insert({"name": fn.__name__, "applied_at": _now()})
        log.info("applied migration %s", fn.__name__)
        applied.append(fn.__name__)
    return applied


# ---- helpers ------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


@dataclass(frozen=True)
class Example:
    """An example question a Routine serves."""

    routine_id: str
    text: str
    source: str = ""


@dataclass(frozen=True)
class ExampleImport:
    """What ``add_examples``/``import_examples`` did: new examples stored, ones already stored, and the
    examples skipped because their Routine is not stored (``skip_unknown``), per Routine id."""

    added: int
    existing: int
    skipped: dict[str, int]


EXAMPLE_TEXT_FIELDS = ("query", "question", "text")
"""Where a JSONL line of example questions may hold the question (the first present one is used)."""


def example_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredVector:
    routine_id: str
    version: int
    content_hash: str


# ---- the store ----------------------------------------------------------------------------------------


class ProcedureStore:
    """Routines with versions and embeddings in one SQLite file (or ``":memory:"``)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            private_file(self.path)  # 0600: stored Routines and their examples are the company's procedures
        self.db = Database(self.path)
        if self.path != ":memory:":
            self.db.enable_wal()
        migrate(self.db)

    @classmethod
    def open(cls, data_dir: str | Path) -> ProcedureStore:
        """The store file ``routines.sqlite`` inside ``data_dir`` (created if missing)."""
        return cls(Path(data_dir).expanduser() / STORE_FILE)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading --------------------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        """Bumped by every write; equal revisions mean equal contents."""
        row = self.db.execute("select value from meta where key = 'revision'").fetchone()
        return int(row[0])

    def __len__(self) -> int:
        return int(self.db.execute("select count(*) from routines").fetchone()[0])

    def __contains__(self, routine_id: object) -> bool:
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
            if version is not None and routine_id in self:
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

    # ---- writing --------------------------------------------------------------------------------------
    def save(self, routine: Routine | dict[str, Any] | list[Any], *, tools: Sequence[Any] = ()) -> Routine:
        """Validate and store a Routine as a new version; return it with ``id`` and ``version`` set.

        Without an ``id`` the id is derived from the name. Saving content identical to the latest version
        stores nothing and returns that version. With ``tools``, tool names and arguments are checked too.
        Raises :class:`InvalidRoutineError` (nothing stored) when validation finds errors."""
        return self.save_prepared(self._prepare(routine, tools=tools))

    def prepare(self, routine: Routine | dict[str, Any] | list[Any], *, tools: Sequence[Any] = ()) -> Routine:
        """What ``save`` checks, without storing: the Routine parsed, with its id, validated (raises
        :class:`InvalidRoutineError`). Touches no database, so it may run in a worker thread."""
        return self._prepare(routine, tools=tools)

    def save_prepared(self, routine: Routine) -> Routine:
        """Store a Routine that ``prepare`` returned (it is not validated again)."""
        with self.db.atomic():
            saved = self._save(routine)
            self._bump()
        return saved

    def save_many(
        self, routines: Iterable[Routine | dict[str, Any] | list[Any]], *, tools: Sequence[Any] = ()
    ) -> list[Routine]:
        """Save several Routines all-or-nothing: one invalid Routine and none is stored."""
        prepared = [self._prepare(r, tools=tools) for r in routines]
        with self.db.atomic():
            saved = [self._save(r) for r in prepared]
            self._bump()
        return saved

    def delete(self, routine_id: str) -> int:
        """Remove a Routine with all its versions, embeddings and example questions; return how many versions
        were removed."""
        with self.db.atomic():
            n = len(self.versions(routine_id))
            for table in ("routine_versions", "embeddings", "examples"):
                self.db.execute(f"delete from {table} where routine_id = ?", [routine_id])
            self.db.execute("delete from routines where id = ?", [routine_id])
            self._prune_example_vectors()
            self._bump()
        return n

    def _prepare(self, data: Routine | dict[str, Any] | list[Any], *, tools: Sequence[Any], source: str = "") -> Routine:
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

    def _save(self, routine: Routine) -> Routine:
        assert routine.id is not None
        digest = content_hash(routine)
        now = _now()
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
             "content_hash": digest, "created_at": now}
        )
        summary = {"name": saved.name, "description": saved.description, "latest_version": version,
                   "n_steps": len(saved.steps), "updated_at": now}
        if row is None:
            self.db["routines"].insert({"id": saved.id, "created_at": now, **summary})
        else:
            self.db["routines"].update(saved.id, summary)
        log.info("saved Routine %s version %d", saved.id, version)
        return saved

    def _bump(self) -> None:
        self.db.execute("update meta set value = value + 1 where key = 'revision'")

    # ---- import / export ------------------------------------------------------------------------------
    def import_dir(self, directory: str | Path, *, tools: Sequence[Any] = ()) -> list[Routine]:
        """Save every ``*.json`` Routine of a directory, all-or-nothing. A file without id or name gets the
        file name (without ``.json``) as id."""
        if not Path(directory).is_dir():
            raise InvalidRoutineError(f"{directory} is not a directory of Routine JSON files")
        files = sorted(Path(directory).glob("*.json"))
        prepared = []
        for path in files:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InvalidRoutineError(f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
            if isinstance(data, list):
                data = {"steps": data}
            if isinstance(data, dict) and not data.get("id") and not data.get("name"):
                data["id"] = path.stem.replace("__", "/")
            prepared.append(self._prepare(data, tools=tools, source=path.name))
        with self.db.atomic():
            saved = [self._save(r) for r in prepared]
            self._bump()
        return saved

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

    # ---- embeddings -----------------------------------------------------------------------------------
    def embedding_state(self, model: str, recipe: str) -> list[tuple[str, int, StoredVector | None]]:
        """For every Routine: (id, latest version, what is stored for this model and recipe, if anything)."""
        rows = self.db.execute(
            "select r.id, r.latest_version, e.version, e.content_hash from routines r left join embeddings e "
            "on e.routine_id = r.id and e.model = ? and e.recipe = ? order by r.id",
            [model, recipe],
        )
        return [(rid, latest, StoredVector(rid, ver, digest) if ver is not None else None)
                for rid, latest, ver, digest in rows]

    def put_embeddings(
        self, model: str, recipe: str, rows: Sequence[tuple[str, int, str, np.ndarray | None]]
    ) -> None:
        """Store (id, version, content hash, vector) rows. A ``None`` vector keeps the stored vector and only
        records that ``version`` has the same embedded text (same content hash)."""
        now = _now()
        with self.db.atomic():
            for rid, version, digest, vector in rows:
                if vector is None:
                    self.db.execute(
                        "update embeddings set version = ?, updated_at = ? where routine_id = ? and model = ? "
                        "and recipe = ? and content_hash = ?",
                        [version, now, rid, model, recipe, digest],
                    )
                    continue
                vec = np.ascontiguousarray(vector, dtype=np.float32)
                self.db["embeddings"].upsert(
                    {"routine_id": rid, "model": model, "recipe": recipe, "version": version,
                     "content_hash": digest, "dim": int(vec.shape[0]), "vector": vec.tobytes(), "updated_at": now},
                    pk=("routine_id", "model", "recipe"),
                )
            self._bump()

    def embedding_matrix(self, model: str, recipe: str) -> tuple[list[str], np.ndarray]:
        """Ids and the (n, dim) float32 matrix of the stored vectors of current Routines."""
        return self._id_matrix(
            "select e.routine_id, e.dim, e.vector from embeddings e join routines r on r.id = e.routine_id "
            "where e.model = ? and e.recipe = ? order by e.routine_id",
            [model, recipe],
        )

    def _id_matrix(self, sql: str, params: list[Any]) -> tuple[list[str], np.ndarray]:
        """Rows of (id, dim, float32 blob) as ids and one (n, dim) matrix."""
        rows = self.db.execute(sql, params).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dim = rows[0][1]
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return [r[0] for r in rows], matrix


    # ---- example questions ----------------------------------------------------------------------------
    def add_examples(
        self, examples: Iterable[Example | tuple[str, str]], *, source: str = "", skip_unknown: bool = False
    ) -> ExampleImport:
        """Store example questions (``Example`` or ``(routine_id, text)``), all-or-nothing. An example already
        stored for its Routine is kept as it is. An example whose Routine is not stored is refused
        (:class:`InvalidExampleError`, nothing stored), or skipped and counted with ``skip_unknown``."""
        known = set(self.ids())
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        skipped: dict[str, int] = {}
        now = _now()
        for item in examples:
            rid, text, src = (item.routine_id, item.text, item.source or source) if isinstance(item, Example) \
                else (item[0], item[1], source)
            text = " ".join(str(text or "").split())
            if not rid or not text:
                raise InvalidExampleError(f"an example needs a Routine id and a question, got {rid!r}: {text!r}")
            if rid not in known:
                if not skip_unknown:
                    raise InvalidExampleError(
                        f"no stored Routine {rid!r} for the example {text!r}; add the Routine first, or skip "
                        "examples of unknown Routines (--skip-unknown)"
                    )
                skipped[rid] = skipped.get(rid, 0) + 1
                continue
            digest = example_hash(text)
            rows[(rid, digest)] = {"routine_id": rid, "text": text, "text_hash": digest, "source": src, "created_at": now}
        with self.db.atomic():
            before = self._count_examples()
            self.db["examples"].insert_all(rows.values(), ignore=True, batch_size=500)
            added = self._count_examples() - before
            self._bump()
        log.info("stored %d example question(s), %d already stored", added, len(rows) - added)
        return ExampleImport(added=added, existing=len(rows) - added, skipped=skipped)

    def import_examples(
        self, path: str | Path, *, source: str | None = None, skip_unknown: bool = False
    ) -> ExampleImport:
        """Store the example questions of a JSONL file (``.jsonl`` or ``.jsonl.gz``): one object per line with
        ``routine_id`` and the question in ``query`` (as in distillation and query data sets), ``question`` or
        ``text``. ``source`` (default: the file name) labels them, so they can be removed together."""
        path = Path(path)
        examples = []
        for n, row, text in _question_rows(path, "example questions"):
            if not row.get("routine_id") or not isinstance(text, str):
                raise InvalidExampleError(
                    f"{path.name} line {n}: an example needs 'routine_id' and the question in "
                    f"{' or '.join(repr(k) for k in EXAMPLE_TEXT_FIELDS)}"
                )
            examples.append(Example(str(row["routine_id"]), text))
        name = source if source is not None else path.name
        return self.add_examples(examples, source=name, skip_unknown=skip_unknown)

    def examples(self, routine_id: str | None = None) -> list[Example]:
        """Stored example questions (of one Routine), by Routine id and insertion order."""
        sql = "select routine_id, text, source from examples"
        rows = (self.db.execute(sql + " where routine_id = ? order by rowid", [routine_id]) if routine_id
                else self.db.execute(sql + " order by routine_id, rowid"))
        return [Example(*row) for row in rows]

    def example_counts(self) -> dict[str, int]:
        """How many example questions each Routine has (Routines without any are left out)."""
        rows = self.db.execute("select routine_id, count(*) from examples group by routine_id order by routine_id")
        return {rid: n for rid, n in rows}

    def delete_examples(self, routine_id: str | None = None, *, source: str | None = None) -> int:
        """Remove the example questions of a Routine and/or from a source (both ``None``: all of them);
        return how many were removed."""
        where, args = [], []
        if routine_id is not None:
            where.append("routine_id = ?")
            args.append(routine_id)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        clause = f" where {' and '.join(where)}" if where else ""
        with self.db.atomic():
            n = int(self.db.execute(f"select count(*) from examples{clause}", args).fetchone()[0])
            self.db.execute(f"delete from examples{clause}", args)
            self._prune_example_vectors()
            self._bump()
        return n

    def _count_examples(self) -> int:
        return int(self.db.execute("select count(*) from examples").fetchone()[0])

    def _prune_example_vectors(self) -> None:
        self.db.execute("delete from example_vectors where text_hash not in "
                        "(select text_hash from examples union select text_hash from negatives)")

    def examples_to_embed(self, model: str) -> list[tuple[str, str]]:
        """(text hash, text) of the example questions that have no vector for ``model`` yet."""
        rows = self.db.execute(
            "select x.text_hash, min(x.text) from (select text_hash, text from examples union all "
            "select text_hash, text from negatives) x left join example_vectors v "
            "on v.text_hash = x.text_hash and v.model = ? where v.text_hash is null group by x.text_hash "
            "order by x.text_hash",
            [model],
        )
        return [(digest, text) for digest, text in rows]

    def put_example_vectors(self, model: str, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store (text hash, vector) rows of example questions for ``model``."""
        now = _now()
        with self.db.atomic():
            self.db["example_vectors"].upsert_all(
                ({"text_hash": digest, "model": model, "dim": int(vec.shape[0]),
                  "vector": np.ascontiguousarray(vec, dtype=np.float32).tobytes(), "updated_at": now}
                 for digest, vec in rows),
                pk=("text_hash", "model"), batch_size=500,
            )
            self._bump()

    def example_matrix(self, model: str) -> tuple[list[str], np.ndarray]:
        """The Routine id of every embedded example question of a stored Routine and the (n, dim) float32
        matrix of their vectors for ``model``."""
        return self._id_matrix(
            "select x.routine_id, v.dim, v.vector from examples x join example_vectors v "
            "on v.text_hash = x.text_hash and v.model = ? join routines r on r.id = x.routine_id "
            "order by x.routine_id, x.rowid",
            [model],
        )

    # ---- negative questions: what no Routine of this store serves ---------------------------------------
    def add_negatives(self, texts: Iterable[str], *, source: str = "") -> ExampleImport:
        """Store questions that no Routine serves (retrieval abstains on questions closer to them than to any
        Routine), all-or-nothing; a question already stored is kept as it is."""
        rows: dict[str, dict[str, Any]] = {}
        now = _now()
        for raw in texts:
            text = " ".join(str(raw or "").split())
            if not text:
                raise InvalidExampleError("a negative question cannot be empty")
            digest = example_hash(text)
            rows[digest] = {"text_hash": digest, "text": text, "source": source, "created_at": now}
        with self.db.atomic():
            before = self._count("negatives")
            self.db["negatives"].insert_all(rows.values(), ignore=True, batch_size=500)
            added = self._count("negatives") - before
            self._bump()
        log.info("stored %d negative question(s), %d already stored", added, len(rows) - added)
        return ExampleImport(added=added, existing=len(rows) - added, skipped={})

    def import_negatives(self, path: str | Path, *, source: str | None = None) -> ExampleImport:
        """Store the questions of a JSONL file (``.jsonl`` or ``.jsonl.gz``; the question in ``query``,
        ``question`` or ``text``) as negatives. A line with a ``routine_id`` is refused: it is an example."""
        path = Path(path)
        texts = []
        for n, row, text in _question_rows(path, "negative questions"):
            if not isinstance(text, str) or row.get("routine_id"):
                raise InvalidExampleError(
                    f"{path.name} line {n}: a negative question needs the question in "
                    f"{' or '.join(repr(k) for k in EXAMPLE_TEXT_FIELDS)} and no 'routine_id'"
                )
            texts.append(text)
        return self.add_negatives(texts, source=source if source is not None else path.name)

    def negatives(self) -> list[Example]:
        """Stored negative questions (``routine_id`` is empty), in insertion order."""
        rows = self.db.execute("select text, source from negatives order by rowid")
        return [Example("", text, source) for text, source in rows]

    def delete_negatives(self, *, source: str | None = None) -> int:
        """Remove the negative questions (of one source); return how many were removed."""
        clause, args = (" where source = ?", [source]) if source is not None else ("", [])
        with self.db.atomic():
            n = int(self.db.execute(f"select count(*) from negatives{clause}", args).fetchone()[0])
            self.db.execute(f"delete from negatives{clause}", args)
            self._prune_example_vectors()
            self._bump()
        return n

    def negative_matrix(self, model: str) -> np.ndarray:
        """The (n, dim) float32 matrix of the embedded negative questions for ``model``."""
        return self._id_matrix(
            "select x.text_hash, v.dim, v.vector from negatives x join example_vectors v "
            "on v.text_hash = x.text_hash and v.model = ? order by x.rowid",
            [model],
        )[1]

    def _count(self, table: str) -> int:
        return int(self.db.execute(f"select count(*) from {table}").fetchone()[0])

    # ---- tuned embedding adapters ---------------------------------------------------------------------
    def put_tuned_model(self, name: str, base_model: str, adapter: bytes, info: dict[str, Any]) -> None:
        """Store an embedding adapter (``memory.tuning``) under ``name``, replacing one of the same name."""
        with self.db.atomic():
            self.db["tuned_models"].upsert(
                {"name": name, "base_model": base_model, "adapter": adapter, "info": json.dumps(info),
                 "created_at": _now()}, pk="name")
            self._bump()

    def tuned_model(self, base_model: str, name: str | None = None) -> tuple[str, bytes, dict[str, Any]] | None:
        """(name, adapter bytes, info) of the newest adapter tuned for ``base_model`` (or the named one)."""
        sql = "select name, adapter, info from tuned_models where base_model = ?"
        args: list[Any] = [base_model]
        if name is not None:
            sql += " and name = ?"
            args.append(name)
        row = self.db.execute(sql + " order by created_at desc, rowid desc limit 1", args).fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def delete_tuned_models(self) -> int:
        """Remove every tuned adapter (retrieval goes back to the base model); return how many."""
        with self.db.atomic():
            n = self._count("tuned_models")
            self.db.execute("delete from tuned_models")
            self._bump()
        return n


def _question_rows(path: Path, what: str) -> list[tuple[int, dict[str, Any], Any]]:
    """(line number, object, question text or None) of each non-empty line of a JSONL file (``.jsonl`` or
    ``.jsonl.gz``); a line that is not a JSON object or a file that cannot be read is an InvalidExampleError
    (a missing file stays FileNotFoundError)."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidExampleError(f"{path.name} line {n}: not JSON ({exc.msg})") from None
                row = row if isinstance(row, dict) else {}
                rows.append((n, row, next((row[k] for k in EXAMPLE_TEXT_FIELDS if row.get(k)), None)))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise InvalidExampleError(f"{path}: cannot read {what} ({exc})") from None
    return rows
