"""Questions of procedure memory: the ``examples`` and ``negatives`` tables.

``examples`` holds example questions per Routine (say, the questions of a distillation data set); retrieval
blends them into the Routine's score. ``negatives`` holds questions no Routine of the store serves (in-domain
requests and off-topic ones); retrieval abstains when a question is closer to them than to any Routine. Both
are keyed by the hash of their text, which is also the key of their vectors (:mod:`memory.vectors`). Both can
be read from JSONL files, the question in ``query``, ``question`` or ``text``.

:class:`Questions` does not open transactions: its writes run inside the caller's
(:class:`memory.store.ProcedureStore`'s, which also counts the write in ``meta``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from memory.errors import InvalidExampleError
from memory.schema import now

log = logging.getLogger(__name__)

EXAMPLE_TEXT_FIELDS = ("query", "question", "text")
"""Where a JSONL line of example questions may hold the question (the first present one is used)."""


@dataclass(frozen=True)
class Example:
    """An example question a Routine serves."""

    routine_id: str
    text: str
    source: str = ""


NEGATIVE_KINDS = ("", "unrelated", "uncovered")
"""What a negative question is: ``unrelated`` (off the store's topic: the weather, football), ``uncovered`` (on
its topic, but no Routine does it: a payroll change in an HR store) or not said (``""``). Retrieval holds a
question to a lower margin against ``uncovered`` ones, which sit close to what the Routines do
(:mod:`memory.retrieval`)."""


def check_kind(kind: Any, where: str = "") -> str:
    """``kind`` when it is one of :data:`NEGATIVE_KINDS`, else an InvalidExampleError saying what to write."""
    if kind not in NEGATIVE_KINDS:
        raise InvalidExampleError(f"{where}kind {kind!r} is not one of "
                                  f"{', '.join(repr(k) for k in NEGATIVE_KINDS if k)} (or leave it out)")
    return str(kind)


@dataclass(frozen=True)
class Negative:
    """A question no Routine of the store serves."""

    text: str
    kind: str = ""
    source: str = ""


@dataclass(frozen=True)
class ExampleImport:
    """What ``add_examples``/``import_examples`` did: new examples stored, ones already stored, and the
    examples skipped because their Routine is not stored (``skip_unknown``), per Routine id."""

    added: int
    existing: int
    skipped: dict[str, int]
    relabelled: int = 0
    """Negative questions already stored whose kind this import changed."""


def example_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_examples(path: Path) -> list[Example]:
    """The example questions of a JSONL file: ``routine_id`` and the question on every line."""
    examples = []
    for n, row, text in _question_rows(path, "example questions"):
        if not row.get("routine_id") or not isinstance(text, str):
            raise InvalidExampleError(
                f"{path.name} line {n}: an example needs 'routine_id' and the question in "
                f"{' or '.join(repr(k) for k in EXAMPLE_TEXT_FIELDS)}"
            )
        examples.append(Example(str(row["routine_id"]), text))
    return examples


def read_negatives(path: Path) -> list[Negative]:
    """The negative questions of a JSONL file: a question and no ``routine_id`` on every line, and optionally
    its ``kind`` (one of :data:`NEGATIVE_KINDS`)."""
    negatives = []
    for n, row, text in _question_rows(path, "negative questions"):
        if not isinstance(text, str) or row.get("routine_id"):
            raise InvalidExampleError(
                f"{path.name} line {n}: a negative question needs the question in "
                f"{' or '.join(repr(k) for k in EXAMPLE_TEXT_FIELDS)} and no 'routine_id'"
            )
        kind = check_kind("" if row.get("kind") is None else row["kind"], f"{path.name} line {n}: ")
        negatives.append(Negative(text, kind))
    return negatives


def read_labelled(path: Path) -> tuple[list[Example], list[Negative]]:
    """The questions of a labelled set (a held-out set that has served its measurement, a log of answered
    questions): a line with a ``routine_id`` is an example of that Routine, a line without one a negative
    question with its ``kind`` (``"in_scope"``, the held-out sets' word for a line with a Routine, is allowed
    there only)."""
    examples, negatives = [], []
    for n, row, text in _question_rows(path, "labelled questions"):
        if not isinstance(text, str):
            raise InvalidExampleError(f"{path.name} line {n}: the question goes in "
                                      f"{' or '.join(repr(k) for k in EXAMPLE_TEXT_FIELDS)}")
        kind = row.get("kind") or ""
        if row.get("routine_id"):
            if kind not in ("", "in_scope"):
                raise InvalidExampleError(f"{path.name} line {n}: a line with a 'routine_id' is in scope, "
                                          f"not {kind!r}; drop the routine_id or the kind")
            examples.append(Example(str(row["routine_id"]), text))
            continue
        if kind == "in_scope":
            raise InvalidExampleError(f"{path.name} line {n}: kind 'in_scope' needs the 'routine_id' that serves it")
        negatives.append(Negative(text, check_kind(kind, f"{path.name} line {n}: ")))
    return examples, negatives


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


class Questions:
    """The example and negative questions of one store database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- example questions ----------------------------------------------------------------------------
    def add_examples(
        self, examples: Iterable[Example | tuple[str, str]], *, known: Collection[str], source: str = "",
        skip_unknown: bool = False,
    ) -> ExampleImport:
        """Store example questions of the Routines ``known`` to the store (see ``ProcedureStore.add_examples``)."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        skipped: dict[str, int] = {}
        stamp = now()
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
            rows[(rid, digest)] = {"routine_id": rid, "text": text, "text_hash": digest, "source": src,
                                   "created_at": stamp}
        added = self._insert("examples", rows.values())
        log.info("stored %d example question(s), %d already stored", added, len(rows) - added)
        return ExampleImport(added=added, existing=len(rows) - added, skipped=skipped)

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

    def remove_examples(self, routine_id: str | None = None, *, source: str | None = None) -> int:
        """Remove the example questions of a Routine and/or from a source (both ``None``: all of them);
        return how many were removed. Their vectors stay until pruned."""
        where, args = [], []
        if routine_id is not None:
            where.append("routine_id = ?")
            args.append(routine_id)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        clause = f" where {' and '.join(where)}" if where else ""
        return self._delete("examples", clause, args)

    def forget_routine(self, routine_id: str) -> None:
        """Remove the example questions of a Routine (without counting them)."""
        self.db.execute("delete from examples where routine_id = ?", [routine_id])

    # ---- negative questions: what no Routine of the store serves ----------------------------------------
    def add_negatives(self, questions: Iterable[str | Negative], *, source: str = "", kind: str = "") -> ExampleImport:
        """Store negative questions (see ``ProcedureStore.add_negatives``)."""
        rows: dict[str, dict[str, Any]] = {}
        stamp = now()
        check_kind(kind, "negative question ")
        for raw in questions:
            item = raw if isinstance(raw, Negative) else Negative(str(raw or ""))
            text = " ".join(item.text.split())
            its_kind = check_kind(item.kind or kind, "negative question ")
            if not text:
                raise InvalidExampleError("a negative question cannot be empty")
            digest = example_hash(text)
            rows[digest] = {"text_hash": digest, "text": text, "source": item.source or source, "kind": its_kind,
                            "created_at": stamp}
        added = self._insert("negatives", rows.values())
        relabelled = 0
        for row in rows.values():  # a kind given now is the one kept (an empty one changes nothing)
            if row["kind"]:
                relabelled += self.db.execute("update negatives set kind = ? where text_hash = ? and kind != ?",
                                              [row["kind"], row["text_hash"], row["kind"]]).rowcount
        log.info("stored %d negative question(s), %d already stored (%d given another kind)",
                 added, len(rows) - added, relabelled)
        return ExampleImport(added=added, existing=len(rows) - added, skipped={}, relabelled=relabelled)

    def negatives(self) -> list[Negative]:
        """Stored negative questions, in insertion order."""
        rows = self.db.execute("select text, kind, source from negatives order by rowid")
        return [Negative(text, kind, source) for text, kind, source in rows]

    def remove_negatives(self, *, source: str | None = None) -> int:
        """Remove the negative questions (of one source); return how many were removed. Their vectors stay
        until pruned."""
        clause, args = (" where source = ?", [source]) if source is not None else ("", [])
        return self._delete("negatives", clause, args)

    # ---- helpers --------------------------------------------------------------------------------------
    def _insert(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """Insert rows, keeping the ones already stored; return how many were new."""
        before = self._count(table)
        self.db[table].insert_all(rows, ignore=True, batch_size=500)
        return self._count(table) - before

    def _delete(self, table: str, clause: str, args: list[Any]) -> int:
        n = int(self.db.execute(f"select count(*) from {table}{clause}", args).fetchone()[0])
        self.db.execute(f"delete from {table}{clause}", args)
        return n

    def _count(self, table: str) -> int:
        return int(self.db.execute(f"select count(*) from {table}").fetchone()[0])
