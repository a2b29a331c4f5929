"""Example questions in procedure memory: stored, imported from JSONL, migrated, embedded once, blended into
retrieval scores (with the model-free HashEmbedder)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.embeddings import HashEmbedder
from memory.errors import InvalidExampleError
from memory.retrieval import DEFAULT_THRESHOLD, EXAMPLES_THRESHOLD, ExampleIndex, Retriever, top_k_mean
from memory.store import MIGRATIONS, Example, ProcedureStore
from tests.fixtures.small_routines import routine


@pytest.fixture
def store(tmp_path: Path) -> ProcedureStore:
    with ProcedureStore.open(tmp_path) as s:
        s.save_many([routine("salary", "Salary of an employee"), routine("letter", "Draft an HR letter"),
                     routine("leave", "Annual leave days left")])
        yield s


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_add_list_count_and_delete(store: ProcedureStore) -> None:
    result = store.add_examples([("hr.letter", "Issue a  salary certificate for Ana"),
                                 Example("hr.salary", "How much does Ana earn?", source="manual")], source="seed")
    assert (result.added, result.existing, result.skipped) == (2, 0, {})
    assert store.add_examples([("hr.letter", "Issue a salary certificate for Ana")]).existing == 1  # same text
    assert store.examples("hr.letter") == [Example("hr.letter", "Issue a salary certificate for Ana", "seed")]
    assert store.examples()[1] == Example("hr.salary", "How much does Ana earn?", "manual")
    assert store.example_counts() == {"hr.letter": 1, "hr.salary": 1}
    assert store.delete_examples(source="manual") == 1
    assert store.delete_examples() == 1 and store.examples() == []


def test_unknown_routine_is_refused_whole_or_skipped(store: ProcedureStore) -> None:
    rows = [("hr.salary", "What is Ana's salary?"), ("hr.pension", "Enrol me in the pension plan")]
    with pytest.raises(InvalidExampleError, match="no stored Routine 'hr.pension'.*--skip-unknown"):
        store.add_examples(rows)
    assert store.examples() == []  # all or nothing
    result = store.add_examples(rows, skip_unknown=True)
    assert result.added == 1 and result.skipped == {"hr.pension": 1}
    with pytest.raises(InvalidExampleError, match="needs a Routine id and a question"):
        store.add_examples([("hr.salary", "  ")])


def test_import_jsonl_and_gzip_with_distillation_style_fields(store: ProcedureStore, tmp_path: Path) -> None:
    plain = write_jsonl(tmp_path / "queries_train.jsonl", [
        {"id": "q1", "query": "Draft a salary certificate for Ana", "routine_id": "hr.letter", "inputs": {}},
        {"question": "How many leave days has Bo left?", "routine_id": "hr.leave"},
    ])
    assert store.import_examples(plain).added == 2
    assert {e.source for e in store.examples()} == {"queries_train.jsonl"}
    packed = tmp_path / "more.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "What does Bo earn?", "routine_id": "hr.salary"}) + "\n\n")
    assert store.import_examples(packed, source="extra").added == 1
    assert store.example_counts() == {"hr.leave": 1, "hr.letter": 1, "hr.salary": 1}


@pytest.mark.parametrize(("content", "message"), [
    ('{"routine_id": "hr.salary"}\n', "line 1: an example needs 'routine_id' and the question"),
    ('{"query": "x", "routine_id": "hr.salary"}\nnot json\n', "line 2: not JSON"),
    ('["hr.salary", "x"]\n', "line 1: an example needs"),
])
def test_bad_example_file_is_one_clear_error(store: ProcedureStore, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidExampleError, match=message):
        store.import_examples(path)
    assert store.examples() == []


def test_deleting_a_routine_deletes_its_examples_and_their_vectors(store: ProcedureStore) -> None:
    store.add_examples([("hr.salary", "What does Ana earn?"), ("hr.leave", "Leave days of Bo")])
    Retriever(store, HashEmbedder()).sync()
    assert store.db.execute("select count(*) from example_vectors").fetchone()[0] == 2
    store.delete("hr.salary")
    assert store.example_counts() == {"hr.leave": 1}
    assert store.db.execute("select count(*) from example_vectors").fetchone()[0] == 1


def test_examples_survive_a_restart_and_the_migration_is_recorded(tmp_path: Path) -> None:
    with ProcedureStore.open(tmp_path) as store:
        store.save(routine("salary", "Salary of an employee"))
        store.add_examples([("hr.salary", "What does Ana earn?")])
    with ProcedureStore.open(tmp_path) as reopened:
        assert reopened.examples() == [Example("hr.salary", "What does Ana earn?")]
        assert "m004_examples" in [r["name"] for r in reopened.db["_migrations"].rows]
        assert "m004_examples" in [m.__name__ for m in MIGRATIONS]


def test_an_example_question_steers_retrieval(store: ProcedureStore) -> None:
    retriever = Retriever(store, HashEmbedder(), threshold=0.0)
    question = "Issue a salary certificate for Ana"
    assert retriever.retrieve(question).candidates[0].routine_id == "hr.salary"  # shares "salary"
    store.add_examples([("hr.letter", "Please issue a salary certificate for Bo")])
    result = retriever.retrieve(question, k=3)  # the new revision rebuilds the index
    assert result.candidates[0].routine_id == "hr.letter" and retriever.with_examples == 1
    assert Retriever(store, HashEmbedder(), threshold=0.0, example_weight=0.0).retrieve(
        question).candidates[0].routine_id == "hr.salary"


def test_example_vectors_are_embedded_once_per_model(store: ProcedureStore) -> None:
    store.add_examples([("hr.salary", "What does Ana earn?"), ("hr.leave", "Leave days of Bo")])
    embedder = HashEmbedder()
    Retriever(store, embedder).retrieve("salary")
    assert embedder.texts_embedded == 3 + 2 + 1  # Routines, examples, the query
    store.add_examples([("hr.letter", "A letter for Ana")])
    Retriever(store, embedder).retrieve("salary")
    assert embedder.texts_embedded == 6 + 1 + 1  # only the new example, plus the query
    other = HashEmbedder(name="other")
    Retriever(store, other).sync()
    assert other.texts_embedded == 3 + 3


def test_default_threshold_depends_on_examples(store: ProcedureStore) -> None:
    retriever = Retriever(store, HashEmbedder())
    assert retriever.threshold == DEFAULT_THRESHOLD
    store.add_examples([("hr.salary", "What does Ana earn?")])
    assert retriever.threshold == EXAMPLES_THRESHOLD
    assert retriever.retrieve("the weather on mars").threshold == EXAMPLES_THRESHOLD
    assert Retriever(store, HashEmbedder(), threshold=0.5).threshold == 0.5
    with pytest.raises(ValueError, match="example_weight"):
        Retriever(store, HashEmbedder(), example_weight=1.0)


def test_example_score_is_the_mean_of_the_nearest_examples() -> None:
    examples = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    index = ExampleIndex.build(["a", "b", "c"], ["a", "a", "b", "gone"], examples)
    assert index.rows.tolist() == [0, 1] and len(index) == 2  # "c" has none, "gone" is not stored
    q = np.array([1, 0, 0], dtype=np.float32)
    np.testing.assert_allclose(index.scores(q, k=1), [1.0, 0.0])
    np.testing.assert_allclose(index.scores(q, k=2), [0.8, 0.0])  # "b" has one example: its mean is that one
    np.testing.assert_allclose(top_k_mean(np.array([[3, 1, 2, -np.inf]]), 3), [2.0])
    assert ExampleIndex.build(["a"], [], np.zeros((0, 3), np.float32)).scores(q, 5).shape == (0,)
