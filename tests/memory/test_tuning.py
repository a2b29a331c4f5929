"""Tuning the embedding model on a store: a LoRA adapter kept in the store, reproducible from its data, merged
into the model retrieval uses, leaving the shared base model untouched (the real all-MiniLM-L6-v2, one or two
optimizer steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memory.embeddings import DEFAULT_MODEL, Embedder
from memory.errors import EmbeddingModelError
from memory.retrieval import Retriever
from memory.store import ProcedureStore
from memory.tuning import (
    TuneConfig,
    adapter_name,
    embedder_for,
    export_adapter,
    import_adapter,
    training_data,
    tune,
)
from tests.fixtures.small_routines import routine

pytest.importorskip("peft")


@pytest.fixture
def store(tmp_path: Path) -> ProcedureStore:
    with ProcedureStore.open(tmp_path) as s:
        s.save_many([routine("salary", "Salary of an employee"), routine("leave", "Annual leave days left")])
        yield s


def test_tuning_needs_examples_of_two_routines(store: ProcedureStore) -> None:
    with pytest.raises(EmbeddingModelError, match="import some first"):
        tune(store)
    store.add_examples([("hr.salary", "What does Ana earn?")])
    with pytest.raises(EmbeddingModelError, match="at least two Routines"):
        tune(store)


def test_the_adapter_name_is_a_hash_of_data_and_config(store: ProcedureStore) -> None:
    store.add_examples([("hr.salary", "What does Ana earn?"), ("hr.leave", "Can Bo take Friday off?")])
    data = training_data(store)
    assert data.ids == ["hr.leave", "hr.salary"] and data.examples[0] == ("Can Bo take Friday off?", 0)
    name = adapter_name(DEFAULT_MODEL, data, TuneConfig())
    assert name == adapter_name(DEFAULT_MODEL, training_data(store), TuneConfig()) and name.startswith("tuned-")
    assert name != adapter_name(DEFAULT_MODEL, data, TuneConfig(seed=1))
    store.add_negatives(["Tell me a joke"])
    assert name != adapter_name(DEFAULT_MODEL, training_data(store), TuneConfig())


@pytest.mark.model
def test_tune_stores_an_adapter_that_retrieval_uses(store: ProcedureStore) -> None:
    questions = ["What does Ana earn?", "Salary of Bo Li", "How much is Kim paid?",
                 "Can Bo take Friday off?", "Leave days left for Ana", "Is Kim allowed a week of holiday?"]
    store.add_examples([("hr.salary", q) for q in questions[:3]] + [("hr.leave", q) for q in questions[3:]])
    store.add_negatives(["Tell me a joke", "Enrol me in the pension plan"])
    base = Embedder()
    before = base.embed(["How much does Ana earn?"])
    assert embedder_for(store).name == DEFAULT_MODEL  # nothing tuned yet: the plain model

    result = tune(store, config=TuneConfig(batch_size=4))
    assert result.trained and result.steps == 2 and (result.examples, result.negatives, result.routines) == (6, 2, 2)
    assert tune(store, config=TuneConfig(batch_size=4)).trained is False  # same data and config: nothing to do

    tuned = embedder_for(store)
    assert tuned.name == f"{DEFAULT_MODEL}+{result.name}" and tuned.base_name == DEFAULT_MODEL
    after = tuned.embed(["How much does Ana earn?"])
    assert not np.allclose(before, after, atol=1e-4)  # the adapter changed the vectors...
    np.testing.assert_allclose(base.embed(["How much does Ana earn?"]), before, atol=1e-6)  # ...not the shared model's
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, rtol=1e-5)
    assert float(tuned.embed_query("How much does Ana earn?") @ after[0]) > 0.999  # the question's fast path too

    found = Retriever(store, tuned, threshold=0.0).retrieve("How much does Ana earn?")
    assert found.routine is not None and found.routine.id == "hr.salary"
    assert store.delete_tuned_models() == 1 and embedder_for(store).name == DEFAULT_MODEL


@pytest.mark.model
def test_an_adapter_exported_and_imported_is_the_same(store: ProcedureStore, tmp_path: Path) -> None:
    store.add_examples([("hr.salary", q) for q in ("What does Ana earn?", "Salary of Bo Li")]
                       + [("hr.leave", q) for q in ("Can Bo take Friday off?", "Leave days left for Ana")])
    name = tune(store, config=TuneConfig(batch_size=4)).name
    before = embedder_for(store).embed(["How much does Ana earn?"])
    assert export_adapter(store, tmp_path / "a.npz") == name and (tmp_path / "a.json").exists()
    store.delete_tuned_models()
    assert import_adapter(store, tmp_path / "a.npz") == (name, True)  # tuned on this store's data, its config
    np.testing.assert_allclose(embedder_for(store).embed(["How much does Ana earn?"]), before, atol=1e-6)


@pytest.mark.model
def test_the_hr_scenario_ships_a_working_adapter(tmp_path: Path) -> None:
    from scenarios.hr import load_routines

    data = Path(__file__).resolve().parents[2] / "scenarios" / "hr" / "data"
    with ProcedureStore.open(tmp_path) as hr:
        hr.save_many(load_routines())
        hr.import_examples(data / "queries_train.jsonl", skip_unknown=True)  # as the demo sets the store up
        hr.import_examples(data / "examples.jsonl")
        hr.import_negatives(data / "negatives_train.jsonl")
        manifest = json.loads((data.parent / "scenario.json").read_text(encoding="utf-8"))
        for relative in manifest["learned_questions"]:
            hr.import_labelled(data.parent / relative, skip_unknown=True)
        name, exact = import_adapter(hr, data / "embedding_adapter.npz")
        assert exact  # tuned on exactly this data: refresh it when the Routines, examples or negatives change
        retriever = Retriever(hr, embedder_for(hr))
        assert retriever.embedder.name.endswith(name)
        found = retriever.retrieve("Draft a salary certificate for Thao Anderson (Finance).")
        assert found.routine is not None and found.routine.id == "hr.employment_letter"
        assert retriever.retrieve("Change the bank account my salary goes to.").abstained
