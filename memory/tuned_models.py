"""Embedding adapters kept in the store: the ``tuned_models`` table.

Each row is a LoRA adapter of an embedding model fine-tuned on the store's Routines, example questions and
negatives (:mod:`memory.tuning` trains, exports and imports them), with the base model it adapts and what it
was trained on. The newest one for a base model is what retrieval embeds with, so the adapter travels with the
store file.

:class:`TunedModels` does not open transactions: its writes run inside the caller's
(:class:`memory.store.ProcedureStore`'s, which also counts the write in ``meta``).
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from memory.schema import now


class TunedModels:
    """The tuned embedding adapters of one store database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, name: str, base_model: str, adapter: bytes, info: dict[str, Any]) -> None:
        """Store an adapter under ``name``, replacing one of the same name."""
        self.db["tuned_models"].upsert(
            {"name": name, "base_model": base_model, "adapter": adapter, "info": json.dumps(info),
             "created_at": now()}, pk="name")

    def newest(self, base_model: str, name: str | None = None) -> tuple[str, bytes, dict[str, Any]] | None:
        """(name, adapter bytes, info) of the newest adapter tuned for ``base_model`` (or the named one)."""
        sql = "select name, adapter, info from tuned_models where base_model = ?"
        args: list[Any] = [base_model]
        if name is not None:
            sql += " and name = ?"
            args.append(name)
        row = self.db.execute(sql + " order by created_at desc, rowid desc limit 1", args).fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def remove_all(self) -> int:
        """Remove every adapter; return how many."""
        n = int(self.db.execute("select count(*) from tuned_models").fetchone()[0])
        self.db.execute("delete from tuned_models")
        return n
