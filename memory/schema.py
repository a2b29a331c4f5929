"""The SQLite schema of procedure memory: its migrations and the ``revision`` counter.

Tables are created by the migrations below, each recorded in ``_migrations`` by name, as simonw/llm does; the
names are what a database remembers, so a migration is never renamed, edited or reordered, only appended.
Which module reads and writes each table:

- ``routines``, ``routine_versions``: :mod:`memory.versions` (every saved version of every Routine);
- ``embeddings``, ``example_vectors``: :mod:`memory.vectors` (vectors, so unchanged text is never embedded
  twice);
- ``examples``, ``negatives``: :mod:`memory.questions` (example questions and questions no Routine serves);
- ``tuned_models``: :mod:`memory.tuned_models` (embedding adapters tuned on the store's data);
- ``meta``: here, the ``revision`` counter bumped by every write, so readers can cache cheaply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlite_utils import Database

log = logging.getLogger(__name__)

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


@migration
def m007_negative_kinds(db: Database) -> None:
    db["negatives"].add_column("kind", str, not_null_default="")


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
            db["_migrations"].insert({"name": fn.__name__, "applied_at": now()})
        log.info("applied migration %s", fn.__name__)
        applied.append(fn.__name__)
    return applied


def now() -> str:
    """The timestamp every table stores: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_revision(db: Database) -> int:
    """The ``revision`` counter: equal revisions mean equal contents."""
    row = db.execute("select value from meta where key = 'revision'").fetchone()
    return int(row[0])


def bump_revision(db: Database) -> None:
    """Count one more write (inside the write's transaction)."""
    db.execute("update meta set value = value + 1 where key = 'revision'")
