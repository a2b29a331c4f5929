"""The vector cache of procedure memory: the ``embeddings`` and ``example_vectors`` tables.

``embeddings`` holds one float32 vector per (Routine, model, text recipe), with the hash of the embedded text
and the version it was computed from, so a Routine whose text did not change is never embedded twice.
``example_vectors`` holds one vector per question text and model, for the example questions and the negative
questions (:mod:`memory.questions`), keyed by the hash of the text. What is embedded and when is
:mod:`memory.retrieval`'s business; this module stores and hands back vectors, as one (n, dim) matrix.

:class:`VectorCache` does not open transactions: its writes run inside the caller's
(:class:`memory.store.ProcedureStore`'s, which also counts the write in ``meta``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlite_utils import Database

from memory.schema import now


@dataclass(frozen=True)
class StoredVector:
    """What a stored Routine vector was computed from."""

    routine_id: str
    version: int
    content_hash: str


def id_matrix(db: Database, sql: str, params: list[Any]) -> tuple[list[str], np.ndarray]:
    """Rows of (id, dim, float32 blob) as ids and one (n, dim) matrix."""
    rows = db.execute(sql, params).fetchall()
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    dim = rows[0][1]
    matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return [r[0] for r in rows], matrix


class VectorCache:
    """The vectors of one store's Routines and questions, per embedding model."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- Routine vectors ------------------------------------------------------------------------------
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
        """Store (id, version, content hash, vector) rows; a ``None`` vector only moves the stored one (same
        content hash) to ``version``."""
        stamp = now()
        for rid, version, digest, vector in rows:
            if vector is None:
                self.db.execute(
                    "update embeddings set version = ?, updated_at = ? where routine_id = ? and model = ? "
                    "and recipe = ? and content_hash = ?",
                    [version, stamp, rid, model, recipe, digest],
                )
                continue
            vec = np.ascontiguousarray(vector, dtype=np.float32)
            self.db["embeddings"].upsert(
                {"routine_id": rid, "model": model, "recipe": recipe, "version": version,
                 "content_hash": digest, "dim": int(vec.shape[0]), "vector": vec.tobytes(), "updated_at": stamp},
                pk=("routine_id", "model", "recipe"),
            )

    def embedding_matrix(self, model: str, recipe: str) -> tuple[list[str], np.ndarray]:
        """Ids and the (n, dim) float32 matrix of the stored vectors of current Routines."""
        return id_matrix(
            self.db,
            "select e.routine_id, e.dim, e.vector from embeddings e join routines r on r.id = e.routine_id "
            "where e.model = ? and e.recipe = ? order by e.routine_id",
            [model, recipe],
        )

    def forget_routine(self, routine_id: str) -> None:
        """Remove the vectors of a Routine (every model and recipe)."""
        self.db.execute("delete from embeddings where routine_id = ?", [routine_id])

    # ---- question vectors -----------------------------------------------------------------------------
    def questions_to_embed(self, model: str) -> list[tuple[str, str]]:
        """(text hash, text) of the example and negative questions that have no vector for ``model`` yet."""
        rows = self.db.execute(
            "select x.text_hash, min(x.text) from (select text_hash, text from examples union all "
            "select text_hash, text from negatives) x left join example_vectors v "
            "on v.text_hash = x.text_hash and v.model = ? where v.text_hash is null group by x.text_hash "
            "order by x.text_hash",
            [model],
        )
        return [(digest, text) for digest, text in rows]

    def put_question_vectors(self, model: str, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store (text hash, vector) rows of questions for ``model``."""
        stamp = now()
        self.db["example_vectors"].upsert_all(
            ({"text_hash": digest, "model": model, "dim": int(vec.shape[0]),
              "vector": np.ascontiguousarray(vec, dtype=np.float32).tobytes(), "updated_at": stamp}
             for digest, vec in rows),
            pk=("text_hash", "model"), batch_size=500,
        )

    def example_matrix(self, model: str) -> tuple[list[str], np.ndarray]:
        """The Routine id of every embedded example question of a stored Routine and the (n, dim) float32
        matrix of their vectors for ``model``."""
        return id_matrix(
            self.db,
            "select x.routine_id, v.dim, v.vector from examples x join example_vectors v "
            "on v.text_hash = x.text_hash and v.model = ? join routines r on r.id = x.routine_id "
            "order by x.routine_id, x.rowid",
            [model],
        )

    def negative_matrix(self, model: str) -> np.ndarray:
        """The (n, dim) float32 matrix of the embedded negative questions for ``model``."""
        return self.negative_kinds(model)[1]

    def negative_kinds(self, model: str) -> tuple[list[str], np.ndarray]:
        """The kinds of the embedded negative questions for ``model`` and their (n, dim) float32 matrix."""
        return id_matrix(
            self.db,
            "select x.kind, v.dim, v.vector from negatives x join example_vectors v "
            "on v.text_hash = x.text_hash and v.model = ? order by x.rowid",
            [model],
        )

    def prune_question_vectors(self) -> None:
        """Remove the vectors of texts that are no longer an example or a negative question."""
        self.db.execute("delete from example_vectors where text_hash not in "
                        "(select text_hash from examples union select text_hash from negatives)")
