"""What makes ``retrieve`` fast: the fast path for one question's vector, the cache of recent questions, and
float16 matrices for large stores. Each must give the scores the slow path gives (docs/procedure-memory.md,
Speed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.embeddings import Embedder, HashEmbedder, embed_question
from memory.matrix import HALF_FROM, VectorMatrix
from memory.query_encoder import QueryCache, QueryEncoder
from memory.retrieval import Retriever, top_k_mean
from memory.store import ProcedureStore
from tests.fixtures.small_routines import routine


def unit_rows(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_cache_keeps_the_most_recent_questions() -> None:
    cache = QueryCache(2)
    cache.put("a", np.ones(3, np.float32))
    cache.put("b", np.zeros(3, np.float32))
    got = cache.get("a")  # "a" is now the most recent: "b" goes first
    assert got is not None and got.tolist() == [1, 1, 1]
    got[0] = 5  # a caller changing its copy does not change the cache
    cache.put("c", np.full(3, 2, np.float32))
    assert cache.get("b") is None and cache.get("a").tolist() == [1, 1, 1] and len(cache) == 2
    assert cache.hits == 2
    off = QueryCache(0)
    off.put("a", np.ones(3, np.float32))
    assert off.get("a") is None and len(off) == 0


def test_an_embedder_without_a_fast_path_embeds_the_question() -> None:
    embedder = HashEmbedder()
    np.testing.assert_array_equal(embed_question(embedder, "salary of Ana"), embedder.embed(["salary of Ana"])[0])
    assert embedder.texts_embedded == 2


def test_a_model_of_another_shape_keeps_encode() -> None:
    class Pooling:
        pooling_mode = "cls"

    class Normalize:
        pass

    class Transformer:
        auto_model = object()

    assert QueryEncoder.for_model([Transformer(), Pooling(), Normalize()]) is None  # CLS pooling
    assert QueryEncoder.for_model([Transformer(), Normalize()]) is None
    assert QueryEncoder.for_model([Transformer(), Pooling(), Normalize()], device="cuda") is None


def test_large_matrices_are_float16_with_the_same_scores() -> None:
    pytest.importorskip("torch")
    rows = unit_rows(HALF_FROM // 384 + 1)
    q = unit_rows(1, seed=1)[0]
    large, small = VectorMatrix(rows), VectorMatrix(rows[:100])
    assert large.half and not small.half and len(large) == len(rows)
    scores = large.dot(q)
    assert scores.dtype == np.float32 and np.abs(scores - rows @ q).max() < 1e-3
    np.testing.assert_array_equal(small.dot(q), rows[:100] @ q)  # float32: the exact product
    assert VectorMatrix(np.zeros((0, 0), np.float32)).dot(np.zeros(0, np.float32)).shape == (0,)


def test_nearest_example_score_ignores_padding() -> None:
    scores = np.array([[0.5, 0.9, -np.inf], [-np.inf, -np.inf, -np.inf]])
    np.testing.assert_allclose(top_k_mean(scores, 1), [0.9, 0.0])


def test_a_large_store_retrieves_what_float32_retrieves(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    embedder = HashEmbedder(dim=384)
    question = "What is the salary of an employee?"
    with ProcedureStore.open(tmp_path) as store:
        many: list[dict[str, Any]] = [routine(f"r{i}", f"Topic number {i} of the HR handbook") for i in range(2800)]
        store.save_many(many + [routine("salary", "Salary of an employee")])
        retriever = Retriever(store, embedder, threshold=0.0)
        result = retriever.retrieve(question, k=3)
        assert retriever._matrix.half  # 2,801 x 384 numbers: float16
        ids, matrix = store.embedding_matrix(embedder.name, "full")
        exact = matrix @ embed_question(embedder, question)
    assert result.routine is not None and result.routine.id == "hr.salary" == ids[int(exact.argmax())]
    assert abs(result.score - float(exact.max())) < 1e-3


@pytest.mark.model
def test_the_fast_path_gives_the_models_vector_and_caches_it() -> None:
    embedder = Embedder()
    question = "How many leave days does Ana Lopez have left?"
    vector = embedder.embed_query(question)
    reference = embedder.embed([question])[0]
    assert vector.dtype == np.float32 and vector.shape == reference.shape
    assert float(vector @ reference) > 0.999 and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    before = embedder.texts_embedded
    np.testing.assert_array_equal(embedder.embed_query(question), vector)  # asked again: from the cache
    assert embedder.texts_embedded == before and embedder.query_cache.hits == 1
