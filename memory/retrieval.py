"""Retrieval from procedure memory: the one best Routine for a question, or an abstention.

The paper found that one right Routine in the prompt beats several candidates (5.3.3), so ``retrieve``
returns a single Routine when its score reaches the threshold and otherwise abstains, handing back the top
candidates so the caller (a person, or the client model) can choose.

A Routine's score is the cosine similarity between the question and the Routine's embedded text. When the
Routine has example questions in the store (``ProcedureStore.add_examples``/``import_examples``), the score
is ``(1 - w) * cos(question, Routine text) + w * cos(question, centroid of its example questions)`` with
``w = example_weight`` (0.2): one blended vector per Routine, so examples cost nothing at query time.

Search is exact cosine similarity over a float32 matrix held in memory (one matrix-vector product; at 10k
Routines and 384 dimensions that is 15 MB and well under a millisecond, see docs/procedure-memory.md). The
matrix is rebuilt from SQLite only when the store's revision changes. Before searching, Routines whose
embedded text changed since they were last embedded (or that have never been embedded with this model and
recipe) are embedded and stored.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memory.embeddings import DEFAULT_RECIPE, TextEmbedder, routine_text, text_hash
from memory.store import ProcedureStore
from routines.model import Routine

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.13
"""Score below which retrieval abstains when no Routine has example questions, for all-MiniLM-L6-v2 and the
default recipe: the highest threshold that still answers 95% of the HR train questions (docs/procedure-memory.md
shows the sweep with the off-topic questions). Recalibrate for another model with
``benchmarks/bench_retrieval.py --part accuracy``."""
EXAMPLES_THRESHOLD = 0.19
"""The same, when Routines have example questions (their blended scores run higher for covered questions, and
barely move for off-topic ones)."""
EXAMPLE_WEIGHT = 0.2
"""Weight of the example-question centroid in a Routine's score (chosen on the HR train questions with their own
phrasing held out of the examples)."""
ABSTAIN_CANDIDATES = 3


_CONTROLLER: Any = None


def blend_examples(
    ids: list[str], matrix: np.ndarray, example_ids: list[str], example_matrix: np.ndarray, weight: float
) -> tuple[np.ndarray, int]:
    """Routine vectors with their example questions blended in: ``(1 - weight) * routine + weight * centroid``,
    the centroid being the normalised mean of the Routine's example vectors. Routines without examples keep
    their vector. Returns the new matrix and how many Routines had examples."""
    if not example_ids or weight <= 0 or len(ids) == 0:
        return matrix, 0
    row = {rid: i for i, rid in enumerate(ids)}
    index = np.array([row.get(rid, -1) for rid in example_ids])
    keep = index >= 0
    sums = np.zeros_like(matrix, dtype=np.float32)
    np.add.at(sums, index[keep], np.asarray(example_matrix, dtype=np.float32)[keep])
    norms = np.linalg.norm(sums, axis=1)
    has = norms > 0
    blended = np.array(matrix, dtype=np.float32, copy=True)
    blended[has] = (1 - weight) * blended[has] + weight * (sums[has] / norms[has, None])
    return blended, int(has.sum())


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Run BLAS single-threaded: a matrix-vector product is memory-bound, and on a busy CPU (or next to
    torch's spinning threads) multi-threaded BLAS made it 10 to 40 times slower here (docs/procedure-memory.md)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController  # comes with sentence-transformers (scikit-learn)

            _CONTROLLER = ThreadpoolController()
        except ImportError:
            _CONTROLLER = False
    if _CONTROLLER is False:
        return contextlib.nullcontext()
    return _CONTROLLER.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class Candidate:
    routine_id: str
    name: str
    score: float


@dataclass
class RetrievalResult:
    """``routine`` is the best Routine, or ``None`` when retrieval abstained; ``candidates`` are the top
    Routines by score (``k`` of them, at least three when abstaining)."""

    query: str
    threshold: float
    candidates: list[Candidate] = field(default_factory=list)
    routine: Routine | None = None

    @property
    def abstained(self) -> bool:
        return self.routine is None

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def explain(self) -> str:
        """One line a person can act on."""
        if not self.candidates:
            return "procedure memory is empty; add Routines first (routine routines add FILE)"
        listing = ", ".join(f"{c.routine_id} ({c.score:.2f})" for c in self.candidates)
        if self.abstained:
            return (f"no Routine matches well enough (best score {self.score:.2f} < threshold {self.threshold:.2f}); "
                    f"candidates: {listing}; name one explicitly")
        return f"best Routine {self.candidates[0].routine_id} (score {self.score:.2f}); candidates: {listing}"


class Retriever:
    """Similarity search over one store with one embedding model and text recipe."""

    def __init__(
        self,
        store: ProcedureStore,
        embedder: TextEmbedder,
        *,
        threshold: float | None = None,
        recipe: str = DEFAULT_RECIPE,
        example_weight: float = EXAMPLE_WEIGHT,
    ) -> None:
        if not 0 <= example_weight < 1:
            raise ValueError(f"example_weight must be in [0, 1), not {example_weight}")
        self.store = store
        self.embedder = embedder
        self._threshold = threshold
        self.recipe = recipe
        self.example_weight = example_weight
        routine_text(Routine(name="check"), recipe)  # unknown recipe -> clear error now, not at first query
        self._revision = -1
        self._ids: list[str] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._names: dict[str, str] = {}
        self.with_examples = 0
        """How many indexed Routines have example questions blended into their vector."""

    @property
    def threshold(self) -> float:
        """The abstention threshold: the one given, else :data:`DEFAULT_THRESHOLD`, or
        :data:`EXAMPLES_THRESHOLD` when some Routine has example questions."""
        if self._threshold is not None:
            return self._threshold
        self._refresh()
        return EXAMPLES_THRESHOLD if self.with_examples else DEFAULT_THRESHOLD

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self._threshold = value

    # ---- keeping embeddings current ---------------------------------------------------------------------
    def sync(self) -> int:
        """Embed the Routines whose embedded text is new or changed, and example questions without a vector;
        return how many Routines were embedded."""
        if self.example_weight > 0:
            self.sync_examples()
        model = self.embedder.name
        state = self.store.embedding_state(model, self.recipe)
        stale = {rid: latest for rid, latest, stored in state if stored is None or stored.version != latest}
        if not stale:
            return 0
        stored_hash = {rid: s.content_hash for rid, _, s in state if s is not None}
        todo: list[tuple[str, int, str, str]] = []
        rows: list[tuple[str, int, str, np.ndarray | None]] = []
        for routine in self.store.latest(list(stale)):
            assert routine.id is not None
            text = routine_text(routine, self.recipe)
            digest = text_hash(text)
            if stored_hash.get(routine.id) == digest:
                rows.append((routine.id, stale[routine.id], digest, None))  # same text: keep the vector
            else:
                todo.append((routine.id, stale[routine.id], digest, text))
        if todo:
            log.info("embedding %d Routine(s) with %s (%s)", len(todo), model, self.recipe)
            vectors = self.embedder.embed([t[3] for t in todo])
            rows.extend((rid, version, digest, vectors[i]) for i, (rid, version, digest, _) in enumerate(todo))
        self.store.put_embeddings(model, self.recipe, rows)
        return len(todo)

    def sync_examples(self) -> int:
        """Embed the example questions that have no vector for this model; return how many."""
        todo = self.store.examples_to_embed(self.embedder.name)
        if not todo:
            return 0
        log.info("embedding %d example question(s) with %s", len(todo), self.embedder.name)
        vectors = self.embedder.embed([text for _, text in todo])
        self.store.put_example_vectors(self.embedder.name, [(digest, vectors[i]) for i, (digest, _) in enumerate(todo)])
        return len(todo)

    def _refresh(self) -> None:
        if self.store.revision == self._revision:
            return
        self.sync()
        self._revision = self.store.revision
        self._ids, matrix = self.store.embedding_matrix(self.embedder.name, self.recipe)
        example_ids, examples = (self.store.example_matrix(self.embedder.name) if self.example_weight > 0
                                 else ([], np.zeros((0, 0), dtype=np.float32)))
        self._matrix, self.with_examples = blend_examples(self._ids, matrix, example_ids, examples, self.example_weight)
        self._names = {info.id: info.name for info in self.store.list()}
        log.debug("retrieval index: %d Routines, %d with example questions", len(self._ids), self.with_examples)

    # ---- searching -------------------------------------------------------------------------------------
    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) for a unit query vector, best first."""
        self._refresh()
        n = len(self._ids)
        if n == 0 or k <= 0:
            return []
        with _one_blas_thread():
            scores = self._matrix @ np.asarray(query_vector, dtype=np.float32)
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._ids[i], float(scores[i])) for i in top]

    def retrieve(self, query: str, k: int = 1, threshold: float | None = None) -> RetrievalResult:
        """The best Routine for ``query`` with its score, or an abstention (``routine is None``) when the best
        score is below the threshold. ``k`` candidates are listed (at least three when abstaining)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        limit = self.threshold if threshold is None else threshold
        self._refresh()
        if not self._ids:
            return RetrievalResult(query=query, threshold=limit)
        vector = self.embedder.embed([query])[0]
        hits = self.search(vector, max(k, ABSTAIN_CANDIDATES))
        candidates = [Candidate(rid, self._names.get(rid, ""), score) for rid, score in hits]
        best_id, best_score = hits[0]
        if best_score < limit:
            return RetrievalResult(query=query, threshold=limit, candidates=candidates)
        return RetrievalResult(
            query=query, threshold=limit, candidates=candidates[:k], routine=self.store.get(best_id)
        )


def retrieve(
    query: str,
    store: ProcedureStore,
    embedder: TextEmbedder,
    *,
    k: int = 1,
    threshold: float | None = None,
    recipe: str = DEFAULT_RECIPE,
) -> RetrievalResult:
    """One-off retrieval (builds a :class:`Retriever`; keep one around to reuse its index)."""
    return Retriever(store, embedder, threshold=threshold, recipe=recipe).retrieve(query, k=k)
