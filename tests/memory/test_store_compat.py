"""A store file written before ``ProcedureStore`` was split into modules (issue 19) opens, takes the
migrations written since (a ``kind`` for negative questions) and works.

``tests/fixtures/store_before_split.sql`` is the ``sqlite3 .dump`` of a store written by the single-module
``memory/store.py`` (commit cf15b23): two Routines (one with two versions), Routine vectors, example and
negative questions with their vectors, and a tuned adapter, timestamps fixed to 2025-01-01.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from memory.store import MIGRATIONS, STORE_FILE, ProcedureStore

DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "store_before_split.sql"
OLD_STAMP = "2025-01-01T00:00:00+00:00"


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    with sqlite3.connect(tmp_path / STORE_FILE) as con:
        con.executescript(DUMP.read_text(encoding="utf-8"))
    con.close()
    return tmp_path


def schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as con:
        rows = con.execute("select type, name, sql from sqlite_master where sql is not null order by name").fetchall()
    con.close()
    return rows


def test_the_old_store_reads_as_it_was_written(old_dir: Path) -> None:
    with ProcedureStore.open(old_dir) as store:
        applied = [(r["name"], r["applied_at"]) for r in store.db["_migrations"].rows]
        old = [m.__name__ for m in MIGRATIONS if m.__name__ < "m007"]
        assert applied[:len(old)] == [(name, OLD_STAMP) for name in old]
        assert [name for name, _ in applied[len(old):]] == ["m007_negative_kinds"]  # the one written since
        assert store.revision == 7
        assert store.ids() == ["hr.leave", "hr.salary"] and len(store) == 2 and "hr.salary" in store
        assert [(i.id, i.version, i.steps, i.updated_at) for i in store.list()] == \
            [("hr.leave", 1, 2, OLD_STAMP), ("hr.salary", 2, 2, OLD_STAMP)]
        assert store.versions("hr.salary") == [1, 2]
        assert store.get("hr.salary").description == "Salary or salary band of an employee"
        assert store.get("hr.salary", version=1).description == "Salary of an employee"
        ids, matrix = store.embedding_matrix("m", "r")
        assert ids == ["hr.leave", "hr.salary"] and matrix.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]
        assert [(rid, latest, v.version if v else None) for rid, latest, v in store.embedding_state("m", "r")] == \
            [("hr.leave", 1, 1), ("hr.salary", 2, 2)]
        assert [(e.routine_id, e.text, e.source) for e in store.examples()] == \
            [("hr.leave", "Days of leave left for Bo", "seed"), ("hr.salary", "How much does Ana earn", "old")]
        assert store.example_counts() == {"hr.leave": 1, "hr.salary": 1}
        assert [(e.text, e.kind, e.source) for e in store.negatives()] == [("Tell me a joke", "", "offtopic")]
        assert store.examples_to_embed("m") == []  # their vectors are found under the same text hashes
        ids, examples = store.example_matrix("m")
        assert ids == ["hr.leave", "hr.salary"] and examples.tolist() == [[0, 1, 0, 1], [2, 1, 0, 1]]
        assert store.negative_matrix("m").tolist() == [[1, 1, 0, 1]]
        assert store.tuned_model("m") == ("m+abc", b"adapter-bytes", {"epochs": 1})


def test_the_old_store_takes_writes(old_dir: Path) -> None:
    with ProcedureStore.open(old_dir) as store:
        salary = store.get("hr.salary")
        assert store.save(salary).version == 2  # same content: no new version
        assert store.save(salary.model_copy(update={"description": "Pay"})).version == 3
        assert store.add_examples([("hr.salary", "How much does Ana earn"), ("hr.salary", "Pay of Bo")]).added == 1
        store.put_example_vectors("m", [(digest, np.ones(4)) for digest, _ in store.examples_to_embed("m")])
        assert store.delete("hr.leave") == 1
        assert store.delete_negatives() == 1
        assert store.db.execute("select count(*) from example_vectors").fetchone()[0] == 2  # the salary questions'
        assert store.revision == 7 + 6
    with ProcedureStore.open(old_dir) as store:
        assert store.ids() == ["hr.salary"] and store.versions("hr.salary") == [1, 2, 3]
        assert [e.text for e in store.examples()] == ["How much does Ana earn", "Pay of Bo"]


def test_the_old_store_once_migrated_has_a_new_stores_schema(old_dir: Path, tmp_path: Path) -> None:
    ProcedureStore.open(tmp_path / "new").close()
    ProcedureStore.open(old_dir).close()
    new, old = schema(tmp_path / "new" / STORE_FILE), schema(old_dir / STORE_FILE)
    assert [row[:2] for row in new] == [row[:2] for row in old]
    # sqlite keeps the added column as ALTER TABLE wrote it: compare the columns, not the statement's text
    with sqlite3.connect(tmp_path / "new" / STORE_FILE) as a, sqlite3.connect(old_dir / STORE_FILE) as b:
        for _, name, _ in (row for row in new if row[0] == "table"):
            assert a.execute(f"pragma table_info('{name}')").fetchall() == b.execute(f"pragma table_info('{name}')").fetchall()
    a.close()
    b.close()
