"""Retrieval: embeddings kept current without re-embedding, top-k, abstention; the HR queries with MiniLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memory.embeddings import RECIPES, Embedder, HashEmbedder, embed_question, routine_text
from memory.retrieval import Retriever
from memory.store import ProcedureStore
from routines.model import Routine

TOPICS = {
    "salary": "Tell an employee's salary or salary band",
    "leave": "Annual leave days left for an employee",
    "team": "Members of a department team and their managers",
    "payslip": "Send the latest payslip of an employee by email",
}


def routine(key: str, description: str | None = None) -> dict[str, Any]:
    return {"id": f"hr.{key}", "name": f"{key.title()} enquiry", "description": description or TOPICS[key],
            "steps": [{"step": "1", "name": "Find employee", "description": "Search by name", "tool": "search_employee"},
                      {"step": "2", "name": "Answer", "tool": "summarize", "type": "finish"}]}


@pytest.fixture
def store(tmp_path: Path) -> ProcedureStore:
    with ProcedureStore.open(tmp_path) as s:
        s.save_many([routine(k) for k in TOPICS])
        yield s


def test_best_routine_with_score(store: ProcedureStore) -> None:
    retriever = Retriever(store, HashEmbedder(), threshold=0.1)
    result = retriever.retrieve("how many annual leave days are left for Ana")
    assert not result.abstained and result.routine is not None
    assert result.routine.id == "hr.leave" and result.best is not None and result.best.routine_id == "hr.leave"
    assert result.score > 0.1 and len(result.candidates) == 1


def test_top_k_in_score_order(store: ProcedureStore) -> None:
    result = Retriever(store, HashEmbedder(), threshold=0.0).retrieve("salary band of an employee", k=3)
    scores = [c.score for c in result.candidates]
    assert len(result.candidates) == 3 and scores == sorted(scores, reverse=True)
    assert result.candidates[0].routine_id == "hr.salary"
    assert result.candidates[0].name == "Salary enquiry"


def test_abstains_below_threshold_with_candidates(store: ProcedureStore) -> None:
    result = Retriever(store, HashEmbedder(), threshold=0.9).retrieve("the weather on mars tomorrow")
    assert result.abstained and result.routine is None
    assert len(result.candidates) == 3
    assert "no Routine matches well enough" in result.explain() and "threshold 0.90" in result.explain()


def test_empty_store_abstains(tmp_path: Path) -> None:
    with ProcedureStore(tmp_path / "empty.sqlite") as empty:
        result = Retriever(empty, HashEmbedder()).retrieve("salary")
    assert result.abstained and result.candidates == [] and "empty" in result.explain()


def test_unchanged_routines_are_never_embedded_again(store: ProcedureStore) -> None:
    embedder = HashEmbedder()
    retriever = Retriever(store, embedder)
    retriever.retrieve("salary")
    assert embedder.texts_embedded == len(TOPICS) + 1  # the Routines once, plus the query
    retriever.retrieve("leave")
    Retriever(store, embedder).retrieve("team")  # a new retriever reads the stored vectors
    assert embedder.texts_embedded == len(TOPICS) + 3


def test_changed_text_re_embeds_one_and_same_text_none(store: ProcedureStore) -> None:
    embedder = HashEmbedder()
    retriever = Retriever(store, embedder, recipe="name+description")
    assert retriever.sync() == len(TOPICS)
    store.save(routine("leave", "Remaining holiday allowance of an employee"))
    assert retriever.sync() == 1
    same_text = Routine.model_validate(routine("team"))
    same_text.steps[0].description = "Search the employee by full name"  # not part of this recipe's text
    store.save(same_text)
    assert store.get("hr.team").version == 2
    assert retriever.sync() == 0
    result = retriever.retrieve("holiday allowance remaining", k=1)
    assert result.best is not None and result.best.routine_id == "hr.leave"


def test_model_change_re_embeds(store: ProcedureStore) -> None:
    first, second = HashEmbedder(name="model-a"), HashEmbedder(dim=128, name="model-b")
    Retriever(store, first).retrieve("salary")
    Retriever(store, second).retrieve("salary")
    assert second.texts_embedded == len(TOPICS) + 1
    Retriever(store, first).retrieve("salary")
    assert first.texts_embedded == len(TOPICS) + 2  # model-a's vectors were kept


def test_deleted_routine_is_not_retrieved(store: ProcedureStore) -> None:
    retriever = Retriever(store, HashEmbedder(), threshold=0.0)
    assert retriever.retrieve("salary band", k=4).candidates[0].routine_id == "hr.salary"
    store.delete("hr.salary")
    ids = [c.routine_id for c in retriever.retrieve("salary band", k=4).candidates]
    assert "hr.salary" not in ids and len(ids) == 3


def test_every_recipe_embeds_the_name() -> None:
    r = Routine.model_validate(routine("salary"))
    for recipe in RECIPES:
        assert routine_text(r, recipe).startswith("Salary enquiry")
    assert "Find employee" in routine_text(r, "name+description+steps")


# ---- the HR scenario with the bundled all-MiniLM-L6-v2 ------------------------------------------------------

OFF_TOPIC = ["What's the weather in Paris tomorrow?", "Tell me a joke.", "What is the capital of Australia?",
             "Reset my VPN password.", "Who won the football match yesterday?", "Cancel my flight to Berlin next week.",
             "How do I install Python on my laptop?", "My monitor is flickering, can IT replace it?"]


def hr_retriever(tmp_path_factory: pytest.TempPathFactory, *, examples: bool) -> Iterator[Retriever]:
    """The HR Routines in a fresh store; with ``examples``, the train queries as example questions."""
    from scenarios.hr import load_routines
    from scenarios.hr.queries import DATA_DIR

    store = ProcedureStore.open(tmp_path_factory.mktemp("hr-examples" if examples else "hr"))
    store.save_many(load_routines())
    if examples:
        store.import_examples(DATA_DIR / "queries_train.jsonl")
    yield Retriever(store, Embedder())
    store.close()


def hr_test_top1(retriever: Retriever) -> float:
    """Top-1 accuracy on the HR test queries, each embedded as ``retrieve`` embeds a question."""
    from scenarios.hr import load_queries

    queries = load_queries("test")
    vectors = [embed_question(retriever.embedder, q["query"]) for q in queries]
    right = sum(retriever.search(v, 1)[0][0] == q["routine_id"] for v, q in zip(vectors, queries))
    return right / len(queries)


@pytest.fixture(scope="module")
def hr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    yield from hr_retriever(tmp_path_factory, examples=False)


@pytest.fixture(scope="module")
def hr_examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    yield from hr_retriever(tmp_path_factory, examples=True)


@pytest.mark.model
def test_hr_test_queries_top1(hr: Retriever) -> None:
    # measured 182/200 = 91.0% from the Routine texts alone (docs/procedure-memory.md)
    assert hr_test_top1(hr) >= 0.90


@pytest.mark.model
def test_hr_test_queries_top1_with_train_questions_as_examples(hr_examples: Retriever) -> None:
    # measured 191/200 = 95.5%; 95.5% too with each test query's phrasing held out of the examples, 95.0% with
    # its whole template held out (benchmarks/bench_retrieval.py --part accuracy)
    accuracy = hr_test_top1(hr_examples)  # searching builds the index, which counts the Routines with examples
    assert hr_examples.with_examples == 7 and accuracy >= 0.945


@pytest.mark.model
def test_hr_covered_question_gets_one_routine(hr: Retriever) -> None:
    result = hr.retrieve("How much does Kofi Barbosa from Customer Support earn?")
    assert not result.abstained and result.routine is not None and result.routine.id == "hr.salary"
    assert len(result.candidates) == 1 and result.score >= hr.threshold


@pytest.mark.model
@pytest.mark.parametrize("question", OFF_TOPIC)
@pytest.mark.parametrize("examples", [False, True], ids=["texts", "examples"])
def test_hr_off_topic_question_abstains_with_candidates(
    hr: Retriever, hr_examples: Retriever, question: str, examples: bool
) -> None:
    retriever = hr_examples if examples else hr
    result = retriever.retrieve(question)
    assert result.abstained and result.routine is None
    assert len(result.candidates) == 3 and all(c.routine_id.startswith("hr.") for c in result.candidates)
