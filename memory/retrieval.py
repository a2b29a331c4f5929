"""Retrieval from procedure memory: the one best Routine for a question, or an abstention.

The paper found that one right Routine in the prompt beats several candidates (5.3.3), so ``retrieve``
returns a single Routine when its score reaches the threshold and otherwise abstains, handing back the top
candidates so the caller (a person, or the client model) can choose.

A Routine's score is the cosine similarity between the question and the Routine's embedded text. When the
Routine has example questions in the store (``ProcedureStore.add_examples``/``import_examples``), the score
is ``(1 - w) * cos(question, Routine text) + w * cos(question, its nearest example question)`` with
``w = example_weight`` (0.5; ``example_k`` > 1 averages the k nearest). When the store has negative questions
(requests no Routine serves, ``add_negatives``/``import_negatives``), retrieval also abstains when the best
Routine's example score is below the question's nearest negative question's score plus a margin:
``negative_margin`` for unrelated (off-topic) negatives and ones of no stated kind, ``uncovered_margin`` for
in-domain requests no Routine covers, which sit close to what the Routines do (``negative_k`` > 1 averages the
k nearest of each of the two groups).
A store's tuned embedding adapter (``memory.tuning``) sharpens both.

Search is exact cosine similarity over matrices held in memory (:class:`memory.matrix.VectorMatrix`: one
matrix-vector product each; float32, or float16 for large ones, see docs/procedure-memory.md, Speed). The
matrices are rebuilt from SQLite only when the store's revision changes. Before searching, Routines whose
embedded text changed since they were last embedded (or that have never been embedded with this model and
recipe) are embedded and stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from memory.embeddings import DEFAULT_RECIPE, TextEmbedder, embed_question, routine_text, text_hash
from memory.matrix import VectorMatrix
from memory.store import ProcedureStore
from routines.model import Routine

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.13
"""Score below which retrieval abstains when no Routine has example questions, for all-MiniLM-L6-v2 and the
default recipe: the highest threshold that still answers 95% of the HR train questions (docs/procedure-memory.md
shows the sweep with the off-topic questions). Recalibrate for another model with
``benchmarks/bench_retrieval.py --part accuracy``."""
EXAMPLES_THRESHOLD = 0.30
"""The same when Routines have example questions (their scores run higher): the highest threshold that still
answers 95% of the HR train questions whose query template is held out of the examples (cross-validation with
the bundled model; a tuned model answers 99.8% of them at 0.30)."""
EXAMPLE_WEIGHT = 0.5
"""Weight of the example questions in a Routine's score: ``(1 - w) * cos(question, Routine text) + w * cos(question,
the Routine's nearest example question)``."""
EXAMPLE_K = 1
"""How many of a Routine's nearest example questions are averaged into its example score (1: the nearest)."""
# The example weight and k were chosen on the HR train questions by cross-validation; NEGATIVE_K and the two
# margins on the four held-out sets already used for a measurement, each scored by a store that learned the
# other three (``benchmarks/cv_retrieval.py --dev ... --rotate``, as the demo's store learns them all): the
# middle of the margins meeting the four targets there (docs/procedure-memory.md, "Used sets learned").
NEGATIVE_K = 1
"""How many of the nearest negative questions of each group (uncovered, the rest) are averaged into that
group's negative score (1: the nearest)."""
NEGATIVE_MARGIN = 0.04
"""Retrieval abstains when the best Routine's nearest example question is not at least this much closer to the
question than its nearest ``unrelated`` negative question (or one of no stated kind)."""
UNCOVERED_MARGIN = -0.02
"""The same against the nearest ``uncovered`` negative question (an in-domain request no Routine does): lower,
since such requests share the Routines' words."""
ABSTAIN_CANDIDATES = 3


@dataclass
class ExampleIndex:
    """Example questions grouped by Routine for nearest-neighbour scoring: ``rows[j]`` is the row (in the
    Routine matrix) of the j-th Routine with examples, ``slots[j]`` the indices of its examples in ``matrix``
    (padded with -1)."""

    rows: np.ndarray
    slots: np.ndarray
    matrix: VectorMatrix

    @classmethod
    def build(cls, ids: list[str], example_ids: list[str], example_matrix: np.ndarray) -> ExampleIndex:
        row = {rid: i for i, rid in enumerate(ids)}
        groups: dict[int, list[int]] = {}
        for j, rid in enumerate(example_ids):
            if rid in row:
                groups.setdefault(row[rid], []).append(j)
        width = max((len(g) for g in groups.values()), default=0)
        slots = np.full((len(groups), width), -1, dtype=np.int64)
        for n, members in enumerate(groups.values()):
            slots[n, : len(members)] = members
        dim = example_matrix.shape[1] if example_matrix.size else 0
        return cls(np.array(list(groups), dtype=np.int64), slots,
                   VectorMatrix(np.asarray(example_matrix, dtype=np.float32).reshape(-1, dim) if dim else
                                np.zeros((0, 0), dtype=np.float32)))

    def __len__(self) -> int:
        return len(self.rows)

    def scores(self, query_vector: np.ndarray, k: int) -> np.ndarray:
        """For each Routine with examples, the mean cosine of its ``k`` nearest example questions."""
        if not len(self.rows):
            return np.zeros(0, dtype=np.float32)
        sims = self.matrix.dot(query_vector)
        return top_k_mean(np.where(self.slots >= 0, sims[self.slots], -np.inf), k)


def top_k_mean(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise mean of the ``k`` largest finite values (fewer when a row has fewer; -inf pads)."""
    if scores.shape[1] == 0:
        return np.zeros(scores.shape[0], dtype=np.float32)
    if k == 1:  # the default: the nearest one, without sorting
        best = scores.max(1)
        return np.where(np.isfinite(best), best, 0)
    k = min(k, scores.shape[1])
    top = -np.partition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else scores
    finite = np.isfinite(top)
    return np.where(finite, top, 0).sum(1) / np.maximum(finite.sum(1), 1)


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
    negative_score: float | None = None
    """How close the query is to the negative questions of the group that decides (``negative_kind``):
    ``None`` when the store has none."""
    negative_kind: str | None = None
    """That group: ``uncovered`` (in-domain requests no Routine covers) or ``unrelated`` (the rest)."""

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
        if self.abstained and self.score >= self.threshold and self.negative_score is not None:
            what = ("requests no Routine covers" if self.negative_kind == "uncovered"
                    else "questions no Routine serves")
            return (f"no Routine serves this: the question is as close to {what} ({self.negative_score:.2f}) as "
                    f"to the best Routine's examples; candidates: {listing}; name one explicitly if one fits")
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
        example_k: int = EXAMPLE_K,
        negative_k: int = NEGATIVE_K,
        negative_margin: float = NEGATIVE_MARGIN,
        uncovered_margin: float = UNCOVERED_MARGIN,
    ) -> None:
        if not 0 <= example_weight < 1:
            raise ValueError(f"example_weight must be in [0, 1), not {example_weight}")
        if example_k < 1 or negative_k < 1:
            raise ValueError(f"example_k and negative_k must be at least 1, not {example_k} and {negative_k}")
        self.store = store
        self.embedder = embedder
        self._threshold = threshold
        self.recipe = recipe
        self.example_weight = example_weight
        self.example_k = example_k
        self.negative_k = negative_k
        self.negative_margin = negative_margin
        self.uncovered_margin = uncovered_margin
        routine_text(Routine(name="check"), recipe)  # unknown recipe -> clear error now, not at first query
        self._revision = -1
        self._ids: list[str] = []
        self._matrix = VectorMatrix(np.zeros((0, 0), dtype=np.float32))
        self._examples = ExampleIndex.build([], [], np.zeros((0, 0), dtype=np.float32))
        self._negatives: dict[str, VectorMatrix] = {}
        """The negative questions' vectors by group: ``uncovered``, and ``unrelated`` for every other kind."""
        self._names: dict[str, str] = {}
        self.with_examples = 0
        """How many indexed Routines have example questions scored with them."""

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

    @property
    def negatives(self) -> int:
        """How many negative questions (requests no Routine serves) the index holds."""
        self._refresh()
        return sum(len(m) for m in self._negatives.values())

    # ---- keeping embeddings current ---------------------------------------------------------------------
    def sync(self) -> int:
        """Embed the Routines whose embedded text is new or changed, and example and negative questions
        without a vector; return how many Routines were embedded."""
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
        """Embed the example and negative questions that have no vector for this model; return how many."""
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
        self._matrix = VectorMatrix(matrix)
        example_ids, examples = (self.store.example_matrix(self.embedder.name) if self.example_weight > 0
                                 else ([], np.zeros((0, 0), dtype=np.float32)))
        self._examples = ExampleIndex.build(self._ids, example_ids, examples)
        self.with_examples = len(self._examples)
        kinds, negatives = self.store.negative_kinds(self.embedder.name)
        uncovered = np.array([k == "uncovered" for k in kinds], dtype=bool)
        groups = {"uncovered": negatives[uncovered], "unrelated": negatives[~uncovered]} if kinds else {}
        self._negatives = {group: VectorMatrix(np.ascontiguousarray(m)) for group, m in groups.items() if len(m)}
        if "" in kinds:
            log.warning("%d of %d negative question(s) have no kind: they are held to the unrelated margin; "
                        "import them again with --kind uncovered or unrelated", kinds.count(""), len(kinds))
        self._names = {info.id: info.name for info in self.store.list()}
        log.debug("retrieval index: %d Routines, %d with example questions, %d negative questions",
                  len(self._ids), self.with_examples, self.negatives)

    # ---- searching -------------------------------------------------------------------------------------
    def scores(self, query_vector: np.ndarray) -> np.ndarray:
        """Every indexed Routine's score for a unit query vector (in the order of the index's ids)."""
        return self._scores(np.asarray(query_vector, dtype=np.float32))[0]

    def _scores(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Routines' scores and their example scores (the text score where a Routine has no examples)."""
        self._refresh()
        scores = self._matrix.dot(q)
        example = scores.copy()
        if len(self._examples):
            rows = self._examples.rows
            example[rows] = self._examples.scores(q, self.example_k)
            scores[rows] = (1 - self.example_weight) * scores[rows] + self.example_weight * example[rows]
        return scores, example

    def negative_scores(self, query_vector: np.ndarray) -> dict[str, float]:
        """Per group of negative questions the store holds (``uncovered``, ``unrelated``: every other kind), the
        mean cosine of the query's ``negative_k`` nearest."""
        self._refresh()
        q = np.asarray(query_vector, dtype=np.float32)
        return {group: float(top_k_mean(m.dot(q)[None, :], self.negative_k)[0]) for group, m in self._negatives.items()}

    def negative_score(self, query_vector: np.ndarray) -> float | None:
        """The deciding group's negative score (see :meth:`negative_limit`); ``None`` without negatives."""
        limit = self.negative_limit(query_vector)
        return None if limit is None else limit[1]

    def negative_limit(self, query_vector: np.ndarray) -> tuple[str, float, float] | None:
        """(group, its negative score, the example score the best Routine needs): each group's score plus its
        margin, the group asking for most; ``None`` without negative questions."""
        limits = [(group, score, score + self.margin_for(group))
                  for group, score in self.negative_scores(query_vector).items()]
        return max(limits, key=lambda g: g[2], default=None)

    def margin_for(self, group: str) -> float:
        """The margin over the negative questions of ``group``."""
        return self.uncovered_margin if group == "uncovered" else self.negative_margin

    def search(self, query_vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) for a unit query vector, best first."""
        return self._search(np.asarray(query_vector, dtype=np.float32), k)[0]

    def _search(self, q: np.ndarray, k: int) -> tuple[list[tuple[str, float]], float]:
        """The ``k`` best (id, score), and the best one's example score."""
        self._refresh()
        n = len(self._ids)
        if n == 0 or k <= 0:
            return [], 0.0
        scores, example = self._scores(q)
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._ids[i], float(scores[i])) for i in top], float(example[top[0]])

    def retrieve(self, query: str, k: int = 1, threshold: float | None = None) -> RetrievalResult:
        """The best Routine for ``query`` with its score, or an abstention (``routine is None``) when the best
        score is below the threshold, or when the store has negative questions and the best Routine's example
        score is below what :meth:`negative_limit` asks. ``k`` candidates are listed (at least
        three when abstaining)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        limit = self.threshold if threshold is None else threshold
        self._refresh()
        if not self._ids:
            return RetrievalResult(query=query, threshold=limit)
        vector = embed_question(self.embedder, query)
        hits, example = self._search(vector, max(k, ABSTAIN_CANDIDATES))
        candidates = [Candidate(rid, self._names.get(rid, ""), score) for rid, score in hits]
        best_id, best_score = hits[0]
        kind, negative, needed = self.negative_limit(vector) or (None, None, None)
        if best_score < limit or (needed is not None and example < needed):
            return RetrievalResult(query=query, threshold=limit, candidates=candidates, negative_score=negative,
                                   negative_kind=kind)
        return RetrievalResult(query=query, threshold=limit, candidates=candidates[:k],
                               routine=self.store.get(best_id), negative_score=negative, negative_kind=kind)


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
