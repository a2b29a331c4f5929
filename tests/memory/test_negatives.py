"""Negative questions (requests no Routine of the store serves): stored, imported, embedded once, and making
retrieval abstain on questions like them (real SQLite, the model-free HashEmbedder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memory.embeddings import HashEmbedder
from memory.errors import InvalidExampleError
from memory.questions import Negative
from memory.retrieval import Retriever
from memory.store import ProcedureStore
from tests.fixtures.small_routines import routine


@pytest.fixture
def store(tmp_path: Path) -> ProcedureStore:
    with ProcedureStore.open(tmp_path) as s:
        s.save_many([routine("salary", "Salary of an employee"), routine("leave", "Annual leave days left")])
        s.add_examples([("hr.salary", "How much does Ana earn per year"), ("hr.leave", "How many leave days has Bo left")])
        yield s


def test_add_import_list_and_delete(store: ProcedureStore, tmp_path: Path) -> None:
    assert store.add_negatives(["Change my  bank account", "Change my bank account"], source="seed").added == 1
    path = tmp_path / "neg.jsonl"
    path.write_text(json.dumps({"question": "Enrol me in the pension plan", "kind": "uncovered"}) + "\n\n"
                    + json.dumps({"text": "Tell me a joke"}) + "\n", encoding="utf-8")
    result = store.import_negatives(path)
    assert (result.added, result.existing) == (2, 0)
    assert [(n.text, n.kind, n.source) for n in store.negatives()] == [
        ("Change my bank account", "", "seed"), ("Enrol me in the pension plan", "uncovered", "neg.jsonl"),
        ("Tell me a joke", "", "neg.jsonl")]
    assert store.delete_negatives(source="seed") == 1
    assert store.delete_negatives() == 2 and store.negatives() == []


def test_an_example_file_is_not_taken_for_negatives(store: ProcedureStore, tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps({"routine_id": "hr.salary", "query": "What does Ana earn?"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidExampleError, match="line 1: .*no 'routine_id'"):
        store.import_negatives(path)
    with pytest.raises(InvalidExampleError, match="cannot be empty"):
        store.add_negatives(["  "])
    assert store.negatives() == []


def test_a_labelled_set_stores_its_examples_and_negatives_together(store: ProcedureStore, tmp_path: Path) -> None:
    path = tmp_path / "used_heldout.jsonl"
    lines = [{"query": "What is Ana paid?", "routine_id": "hr.salary", "kind": "in_scope"},
             {"query": "Who won the cup final?", "routine_id": None, "kind": "unrelated"},
             {"question": "Enrol me in the pension plan", "kind": "uncovered"},
             {"text": "Tell me a joke"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    examples, negatives = store.import_labelled(path)
    assert (examples.added, negatives.added) == (1, 3)
    assert ("hr.salary", "What is Ana paid?", "used_heldout.jsonl") in {(e.routine_id, e.text, e.source)
                                                                        for e in store.examples()}
    assert [(n.text, n.kind, n.source) for n in store.negatives()] == [
        ("Who won the cup final?", "unrelated", "used_heldout.jsonl"),
        ("Enrol me in the pension plan", "uncovered", "used_heldout.jsonl"), ("Tell me a joke", "", "used_heldout.jsonl")]


@pytest.mark.parametrize(("line", "error"), [
    ({"query": "Who is on leave?", "kind": "in_scope"}, "line 2: kind 'in_scope' needs the 'routine_id'"),
    ({"query": "Book me a flight", "kind": "travel"}, "line 2: kind 'travel' is not one of"),
    ({"routine_id": "hr.leave"}, "line 2: the question goes in"),
    ({"query": "Who won the cup?", "routine_id": "hr.leave", "kind": "unrelated"}, "line 2: .* is in scope, not 'unrelated'"),
    ({"query": "Who approves my expenses?", "routine_id": "hr.expenses"}, "no stored Routine 'hr.expenses'"),
])
def test_a_bad_labelled_line_stores_nothing(store: ProcedureStore, tmp_path: Path, line: dict, error: str) -> None:
    path = tmp_path / "labelled.jsonl"
    path.write_text(json.dumps({"query": "Tell me a joke", "kind": "unrelated"}) + "\n" + json.dumps(line) + "\n",
                    encoding="utf-8")
    before = len(store.examples())
    with pytest.raises(InvalidExampleError, match=error):
        store.import_labelled(path)
    assert store.negatives() == [] and len(store.examples()) == before


def test_a_question_like_a_negative_is_refused_with_a_reason(store: ProcedureStore) -> None:
    retriever = Retriever(store, HashEmbedder(), threshold=0.0)
    question = "Please change the bank account my salary is paid into"
    assert not retriever.retrieve(question).abstained  # shares "salary" with the salary Routine
    store.add_negatives(["Change the bank account my salary is paid into", "Update my bank account details"])
    result = retriever.retrieve(question)  # the new revision rebuilds the index
    assert result.abstained and retriever.negatives == 2
    assert result.negative_score is not None and "no Routine serves this" in result.explain()
    assert len(result.candidates) == 2 and result.candidates[0].routine_id == "hr.salary"
    answered = retriever.retrieve("How much does Ana earn per year")  # its own example: far from the negatives
    assert answered.routine is not None and answered.routine.id == "hr.salary"


def test_negative_vectors_are_embedded_once_and_pruned(store: ProcedureStore) -> None:
    embedder = HashEmbedder()
    store.add_negatives(["Tell me a joke"])
    Retriever(store, embedder).retrieve("salary")
    assert embedder.texts_embedded == 2 + 2 + 1 + 1  # Routines, examples, the negative, the query
    Retriever(store, embedder).retrieve("salary")
    assert embedder.texts_embedded == 6 + 1  # only the query
    store.delete_negatives()
    assert store.db.execute("select count(*) from example_vectors").fetchone()[0] == 2


def test_the_migrations_are_recorded(tmp_path: Path) -> None:
    with ProcedureStore.open(tmp_path) as store:
        names = [r["name"] for r in store.db["_migrations"].rows]
    assert names[-3:] == ["m005_negatives", "m006_tuned_models", "m007_negative_kinds"]


def test_a_kind_is_checked_and_a_later_import_can_state_it(store: ProcedureStore, tmp_path: Path) -> None:
    store.add_negatives(["Tell me a joke"], source="seed")
    path = tmp_path / "neg.jsonl"
    path.write_text(json.dumps({"question": "Enrol me in the pension plan", "kind": "unrelated"}) + "\n"
                    + json.dumps({"question": "Book me a flight", "kind": "off-topic"}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidExampleError, match="line 2: kind 'off-topic' is not one of 'unrelated', 'uncovered'"):
        store.import_negatives(path)
    with pytest.raises(InvalidExampleError, match="kind 'other'"):
        store.add_negatives(["Book me a flight"], kind="other")
    path.write_text(json.dumps({"question": "Book me a flight", "kind": 0}) + "\n", encoding="utf-8")
    with pytest.raises(InvalidExampleError, match="kind 0 is not one of"):
        store.import_negatives(path)
    assert [(n.text, n.kind) for n in store.negatives()] == [("Tell me a joke", "")]  # nothing half-stored

    result = store.add_negatives([Negative("Tell me a joke", "unrelated"), "Enrol me in the pension plan",
                                  Negative("Book me a flight", source="travel")], kind="uncovered", source="batch")
    assert (result.added, result.existing, result.relabelled) == (2, 1, 1)
    assert store.add_negatives(["Enrol me in the pension plan"], kind="unrelated").relabelled == 1  # the latest kind
    assert store.add_negatives(["Enrol me in the pension plan"]).relabelled == 0  # no kind given: kept
    assert [(n.text, n.kind, n.source) for n in store.negatives()] == [
        ("Tell me a joke", "unrelated", "seed"), ("Enrol me in the pension plan", "unrelated", "batch"),
        ("Book me a flight", "uncovered", "travel")]
    path.write_text(json.dumps({"question": "Tell me a joke"}) + "\n"
                    + json.dumps({"question": "Book me a flight", "kind": "unrelated"}) + "\n", encoding="utf-8")
    result = store.import_negatives(path, kind="uncovered")  # a line's own kind wins over the default
    assert (result.added, result.relabelled) == (0, 2)
    assert {n.text: n.kind for n in store.negatives()} == {
        "Tell me a joke": "uncovered", "Enrol me in the pension plan": "unrelated", "Book me a flight": "unrelated"}


def test_each_group_of_negatives_is_held_to_its_own_margin(store: ProcedureStore) -> None:
    """The same negative question refuses a question at ``negative_margin`` and lets it through at a lower
    ``uncovered_margin`` once it is marked uncovered; with both groups stored, the one asking for most decides
    and the explanation names it."""
    question = "Please change the bank account my salary is paid into"
    vector = HashEmbedder().embed([question])[0]
    negative = "Change the bank account my salary is paid into"
    retriever = Retriever(store, HashEmbedder(), threshold=0.0, negative_margin=0.0, uncovered_margin=-2.0)
    store.add_negatives([negative])
    refused = retriever.retrieve(question)
    assert refused.abstained and refused.negative_kind == "unrelated"  # no kind: held like an unrelated one
    assert "as close to questions no Routine serves" in refused.explain()
    group, score, needed = retriever.negative_limit(vector)
    assert group == "unrelated" and needed == score == retriever.negative_score(vector) > 0.5

    store.add_negatives([negative], kind="uncovered")
    assert not retriever.retrieve(question).abstained
    assert list(retriever.negative_scores(vector)) == ["uncovered"]

    store.add_negatives(["Tell me a joke about bank accounts"], kind="unrelated")  # far, but its margin is high
    retriever.negative_margin = 0.9
    both = retriever.retrieve(question)
    assert set(retriever.negative_scores(vector)) == {"uncovered", "unrelated"}
    assert both.abstained and both.negative_kind == "unrelated"
    assert both.negative_score == pytest.approx(retriever.negative_scores(vector)["unrelated"])
    retriever.negative_margin, retriever.uncovered_margin = -2.0, 0.0
    uncovered = retriever.retrieve(question)
    assert uncovered.abstained and uncovered.negative_kind == "uncovered"
    assert "as close to requests no Routine covers" in uncovered.explain()


def test_negative_groups_on_the_float16_path(store: ProcedureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import memory.matrix

    monkeypatch.setattr(memory.matrix, "HALF_FROM", 1)
    store.add_negatives(["Change the bank account my salary is paid into"], kind="uncovered")
    store.add_negatives(["Tell me a joke"], kind="unrelated")
    retriever = Retriever(store, HashEmbedder(), threshold=0.0)
    vector = HashEmbedder().embed(["Please change the bank account my salary is paid into"])[0]
    scores = retriever.negative_scores(vector)
    exact = float(store.negative_matrix(retriever.embedder.name)[0] @ vector)
    assert set(scores) == {"uncovered", "unrelated"} and scores["uncovered"] == pytest.approx(exact, abs=1e-3)
