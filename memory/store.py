"""``ProcedureStore``: Routines in SQLite, every saved version kept, with their embeddings (paper 3.4.1).

One SQLite file (or ``":memory:"``) holds what procedure memory knows; each part lives in its own module:

- :mod:`memory.versions`: the Routines, every saved version kept (``routines``, ``routine_versions``);
- :mod:`memory.vectors`: the vector cache of Routines and questions (``embeddings``, ``example_vectors``);
- :mod:`memory.questions`: example questions per Routine and negative questions (``examples``, ``negatives``);
- :mod:`memory.tuned_models`: embedding adapters tuned on the store's data (``tuned_models``);
- :mod:`memory.schema`: the migrations that create the tables and the ``revision`` counter (``meta``).

``ProcedureStore`` is the one object callers use. It owns the transactions: every write runs in one, which
also bumps the revision, so after a crash a write (a Routine, a batch of examples) is either fully stored or
not at all, and a write that touches several parts (deleting a Routine) touches them all or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
from sqlite_utils import Database

from memory.files import private_file
from memory.questions import (
    EXAMPLE_TEXT_FIELDS,
    Example,
    ExampleImport,
    Negative,
    Questions,
    example_hash,
    read_examples,
    read_labelled,
    read_negatives,
)
from memory.schema import MIGRATIONS, Migration, bump_revision, current_revision, migrate, migration
from memory.tuned_models import TunedModels
from memory.vectors import StoredVector, VectorCache
from memory.versions import (
    ID_RE,
    RoutineInfo,
    RoutineVersions,
    content_hash,
    file_name,
    prepare_dir,
    prepare_routine,
    slugify,
)
from routines.model import Routine

__all__ = [
    "EXAMPLE_TEXT_FIELDS", "ID_RE", "MIGRATIONS", "STORE_FILE", "Example", "ExampleImport", "Migration",
    "Negative", "ProcedureStore", "RoutineInfo", "StoredVector", "content_hash", "example_hash", "file_name", "migrate",
    "migration", "slugify",
]

STORE_FILE = "routines.sqlite"


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
        self.routines = RoutineVersions(self.db)
        self.vectors = VectorCache(self.db)
        self.questions = Questions(self.db)
        self.adapters = TunedModels(self.db)

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

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction that counts as one write: all of it is stored, and the revision bumped, or none."""
        with self.db.atomic():
            yield
            bump_revision(self.db)

    # ---- Routines: reading ----------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        """Bumped by every write; equal revisions mean equal contents."""
        return current_revision(self.db)

    def __len__(self) -> int:
        return self.routines.count()

    def __contains__(self, routine_id: object) -> bool:
        return self.routines.contains(routine_id)

    def ids(self) -> list[str]:
        return self.routines.ids()

    def list(self) -> list[RoutineInfo]:
        return self.routines.list()

    def get(self, routine_id: str, version: int | None = None) -> Routine:
        """The latest version of a Routine, or the given one."""
        return self.routines.get(routine_id, version)

    def versions(self, routine_id: str) -> list[int]:
        return self.routines.versions(routine_id)

    def latest(self, ids: Iterable[str] | None = None) -> Iterator[Routine]:
        """The latest version of every Routine (or of the given ids), in id order."""
        return self.routines.latest(ids)

    # ---- Routines: writing ----------------------------------------------------------------------------
    def save(self, routine: Routine | dict[str, Any] | list[Any], *, tools: Sequence[Any] = ()) -> Routine:
        """Validate and store a Routine as a new version; return it with ``id`` and ``version`` set.

        Without an ``id`` the id is derived from the name. Saving content identical to the latest version
        stores nothing and returns that version. With ``tools``, tool names and arguments are checked too.
        Raises :class:`InvalidRoutineError` (nothing stored) when validation finds errors."""
        return self.save_prepared(prepare_routine(routine, tools=tools))

    def prepare(self, routine: Routine | dict[str, Any] | list[Any], *, tools: Sequence[Any] = ()) -> Routine:
        """What ``save`` checks, without storing: the Routine parsed, with its id, validated (raises
        :class:`InvalidRoutineError`). Touches no database, so it may run in a worker thread."""
        return prepare_routine(routine, tools=tools)

    def save_prepared(self, routine: Routine) -> Routine:
        """Store a Routine that ``prepare`` returned (it is not validated again)."""
        with self._write():
            return self.routines.insert(routine)

    def save_many(
        self, routines: Iterable[Routine | dict[str, Any] | list[Any]], *, tools: Sequence[Any] = ()
    ) -> list[Routine]:
        """Save several Routines all-or-nothing: one invalid Routine and none is stored."""
        return self._insert_all([prepare_routine(r, tools=tools) for r in routines])

    def delete(self, routine_id: str) -> int:
        """Remove a Routine with all its versions, embeddings and example questions; return how many versions
        were removed."""
        with self._write():
            n = self.routines.remove(routine_id)
            self.vectors.forget_routine(routine_id)
            self.questions.forget_routine(routine_id)
            self.vectors.prune_question_vectors()
        return n

    def import_dir(self, directory: str | Path, *, tools: Sequence[Any] = ()) -> list[Routine]:
        """Save every ``*.json`` Routine of a directory, all-or-nothing. A file without id or name gets the
        file name (without ``.json``) as id."""
        return self._insert_all(prepare_dir(directory, tools=tools))

    def export_dir(self, directory: str | Path) -> list[Path]:
        """Write the latest version of every Routine to ``<id>.json`` in ``directory``."""
        return self.routines.export_dir(directory)

    def _insert_all(self, prepared: list[Routine]) -> list[Routine]:
        with self._write():
            return [self.routines.insert(r) for r in prepared]

    # ---- embeddings -----------------------------------------------------------------------------------
    def embedding_state(self, model: str, recipe: str) -> list[tuple[str, int, StoredVector | None]]:
        """For every Routine: (id, latest version, what is stored for this model and recipe, if anything)."""
        return self.vectors.embedding_state(model, recipe)

    def put_embeddings(
        self, model: str, recipe: str, rows: Sequence[tuple[str, int, str, np.ndarray | None]]
    ) -> None:
        """Store (id, version, content hash, vector) rows. A ``None`` vector keeps the stored vector and only
        records that ``version`` has the same embedded text (same content hash)."""
        with self._write():
            self.vectors.put_embeddings(model, recipe, rows)

    def embedding_matrix(self, model: str, recipe: str) -> tuple[list[str], np.ndarray]:
        """Ids and the (n, dim) float32 matrix of the stored vectors of current Routines."""
        return self.vectors.embedding_matrix(model, recipe)

    # ---- example questions ----------------------------------------------------------------------------
    def add_examples(
        self, examples: Iterable[Example | tuple[str, str]], *, source: str = "", skip_unknown: bool = False
    ) -> ExampleImport:
        """Store example questions (``Example`` or ``(routine_id, text)``), all-or-nothing. An example already
        stored for its Routine is kept as it is. An example whose Routine is not stored is refused
        (:class:`InvalidExampleError`, nothing stored), or skipped and counted with ``skip_unknown``."""
        known = set(self.ids())
        with self._write():
            return self.questions.add_examples(examples, known=known, source=source, skip_unknown=skip_unknown)

    def import_examples(
        self, path: str | Path, *, source: str | None = None, skip_unknown: bool = False
    ) -> ExampleImport:
        """Store the example questions of a JSONL file (``.jsonl`` or ``.jsonl.gz``): one object per line with
        ``routine_id`` and the question in ``query`` (as in distillation and query data sets), ``question`` or
        ``text``. ``source`` (default: the file name) labels them, so they can be removed together."""
        path = Path(path)
        examples = read_examples(path)
        name = source if source is not None else path.name
        return self.add_examples(examples, source=name, skip_unknown=skip_unknown)

    def examples(self, routine_id: str | None = None) -> list[Example]:
        """Stored example questions (of one Routine), by Routine id and insertion order."""
        return self.questions.examples(routine_id)

    def example_counts(self) -> dict[str, int]:
        """How many example questions each Routine has (Routines without any are left out)."""
        return self.questions.example_counts()

    def delete_examples(self, routine_id: str | None = None, *, source: str | None = None) -> int:
        """Remove the example questions of a Routine and/or from a source (both ``None``: all of them);
        return how many were removed."""
        with self._write():
            n = self.questions.remove_examples(routine_id, source=source)
            self.vectors.prune_question_vectors()
        return n

    def examples_to_embed(self, model: str) -> list[tuple[str, str]]:
        """(text hash, text) of the example questions that have no vector for ``model`` yet."""
        return self.vectors.questions_to_embed(model)

    def put_example_vectors(self, model: str, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store (text hash, vector) rows of example questions for ``model``."""
        with self._write():
            self.vectors.put_question_vectors(model, rows)

    def example_matrix(self, model: str) -> tuple[list[str], np.ndarray]:
        """The Routine id of every embedded example question of a stored Routine and the (n, dim) float32
        matrix of their vectors for ``model``."""
        return self.vectors.example_matrix(model)

    # ---- negative questions: what no Routine of this store serves ---------------------------------------
    def add_negatives(self, questions: Iterable[str | Negative], *, source: str = "", kind: str = "") -> ExampleImport:
        """Store questions that no Routine serves (retrieval abstains on questions closer to them than to any
        Routine), all-or-nothing. ``kind`` (``unrelated``, ``uncovered`` or empty, see
        :data:`memory.questions.NEGATIVE_KINDS`) is given to the questions that do not carry their own (a
        :class:`Negative` may; so may its ``source``). A question already stored keeps its text and source and
        takes the kind given now, if any (``relabelled`` counts them)."""
        with self._write():
            return self.questions.add_negatives(questions, source=source, kind=kind)

    def import_negatives(self, path: str | Path, *, source: str | None = None, kind: str = "") -> ExampleImport:
        """Store the questions of a JSONL file (``.jsonl`` or ``.jsonl.gz``; the question in ``query``,
        ``question`` or ``text``, optionally a ``kind``; ``kind`` for the lines without one) as negatives. A
        line with a ``routine_id`` is refused: it is an example."""
        path = Path(path)
        negatives = read_negatives(path)
        return self.add_negatives(negatives, source=source if source is not None else path.name, kind=kind)

    def import_labelled(
        self, path: str | Path, *, source: str | None = None, skip_unknown: bool = False
    ) -> tuple[ExampleImport, ExampleImport]:
        """Store a labelled question set (:func:`memory.questions.read_labelled`: lines with a ``routine_id``
        as its examples, the others as negative questions of their kind), all-or-nothing; return what the
        examples and what the negatives import did."""
        path = Path(path)
        examples, negatives = read_labelled(path)
        name = source if source is not None else path.name
        known = set(self.ids())
        with self._write():
            return (self.questions.add_examples(examples, known=known, source=name, skip_unknown=skip_unknown),
                    self.questions.add_negatives(negatives, source=name))

    def negatives(self) -> list[Negative]:
        """Stored negative questions, in insertion order."""
        return self.questions.negatives()

    def delete_negatives(self, *, source: str | None = None) -> int:
        """Remove the negative questions (of one source); return how many were removed."""
        with self._write():
            n = self.questions.remove_negatives(source=source)
            self.vectors.prune_question_vectors()
        return n

    def negative_matrix(self, model: str) -> np.ndarray:
        """The (n, dim) float32 matrix of the embedded negative questions for ``model``."""
        return self.vectors.negative_matrix(model)

    def negative_kinds(self, model: str) -> tuple[list[str], np.ndarray]:
        """The kinds of the embedded negative questions for ``model`` and their (n, dim) float32 matrix."""
        return self.vectors.negative_kinds(model)

    # ---- tuned embedding adapters ---------------------------------------------------------------------
    def put_tuned_model(self, name: str, base_model: str, adapter: bytes, info: dict[str, Any]) -> None:
        """Store an embedding adapter (``memory.tuning``) under ``name``, replacing one of the same name."""
        with self._write():
            self.adapters.put(name, base_model, adapter, info)

    def tuned_model(self, base_model: str, name: str | None = None) -> tuple[str, bytes, dict[str, Any]] | None:
        """(name, adapter bytes, info) of the newest adapter tuned for ``base_model`` (or the named one)."""
        return self.adapters.newest(base_model, name)

    def delete_tuned_models(self) -> int:
        """Remove every tuned adapter (retrieval goes back to the base model); return how many."""
        with self._write():
            return self.adapters.remove_all()
