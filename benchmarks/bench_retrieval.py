"""Procedure-memory benchmark: retrieval accuracy on the HR queries, embedding throughput, and retrieval
latency at 100, 1k and 10k Routines.

    .venv/bin/python benchmarks/bench_retrieval.py                    # both parts, about 2 minutes here
    .venv/bin/python benchmarks/bench_retrieval.py --part accuracy    # or one part; the other's numbers are kept

Numbers go to docs/benchmarks/retrieval.json (see docs/procedure-memory.md).

Accuracy: the seven HR Routines are stored and every text recipe is scored on the train and test queries
(top-1 = the retrieved id is the query's ``routine_id``), plus the best-score distribution of covered
questions and of questions no Routine covers, at the default threshold. Then the train queries are imported
as example questions (``ProcedureStore.import_examples``) and the test queries scored again: with every
example, with the test query's own phrasing held out of the examples, and with its whole template (the
phrasings of one intent) held out, since train and test share phrasings and differ only in names. Last, the
abstention thresholds are calibrated on the train questions and OFF_TOPIC_CALIBRATION (the highest threshold
that still answers 95% of the covered train questions), and reported on the test questions, OFF_TOPIC and
HR_UNCOVERED.

Latency: Routines are synthesized (name, description and steps from a vocabulary of HR-like topics) and
saved through ``ProcedureStore.save_many``. Up to ``--real-up-to`` (100) they are embedded for real with the
bundled all-MiniLM-L6-v2; above it, random unit vectors are written directly with the right text hashes
(the search cost does not depend on the vectors' content, and embedding thousands of texts on a shared CPU
takes minutes: see the measured throughput), so ``Retriever.sync`` finds them current and embeds nothing.
Latency is measured for the whole ``retrieve`` (query embedding + search + loading the Routine) and for the
search alone. Every timed ``retrieve`` gets a question of its own (:func:`distinct_queries`: templates with
names, months and teams), so the embedder's cache of recent questions never answers (``query_cache_hits``
checks it); ``retrieve_repeated`` is the same question asked again, answered from that cache. The accuracy
part embeds its questions as ``retrieve`` does (``Embedder.embed_query``), the stored texts as ``sync`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memory.embeddings import DEFAULT_RECIPE, Embedder, routine_text, text_hash
from memory.matrix import HALF_FROM
from memory.query_encoder import native_bfloat16
from memory.retrieval import Retriever
from memory.store import ProcedureStore
from routines.model import Routine

SUBJECTS = ["salary", "leave balance", "travel expense", "payslip", "team members", "training budget",
            "overtime", "parental leave", "laptop request", "sick note", "performance review", "bonus",
            "relocation", "pension", "contract renewal", "badge access", "holiday calendar", "shift swap"]
ACTIONS = ["enquiry", "approval", "report", "update", "request", "check", "summary", "correction"]
AUDIENCES = ["for a manager", "for the employee", "for HR staff", "for finance", "for a team lead"]
STEP_NAMES = ["Get requester", "Check permission", "Find employee", "Fetch record", "Compute total",
              "Check policy", "Notify manager", "Write answer"]
QUERIES = ["How many leave days does Ana Lopez have left?", "Show me the payslip of Tom Berg for May",
           "Who is in the finance team?", "Approve the travel expense of Li Wei", "What is my pension plan?",
           "Renew the contract of Sara Kim", "Swap my Friday shift with Omar", "What bonus did Raj get?"]
TEMPLATES = ["How many leave days does {name} have left?", "Show me the payslip of {name} for {month}",
             "Who is in the {team} team?", "Approve the travel expense of {name} from {month}",
             "What pension plan is {name} on?", "Renew the contract of {name} in the {team} team",
             "Swap my {day} shift with {first}", "What bonus did {name} get in {month}?",
             "Is {name} allowed to work from home on {day}?", "List the overtime of the {team} team for {month}"]
FIRST = ["Ana", "Tom", "Li", "Sara", "Omar", "Raj", "Kofi", "Mia", "Jonas", "Aiko", "Pedro", "Nia", "Ivan", "Zoe",
         "Sam", "Lea", "Hugo", "Amara", "Finn", "Yusuf"]
LAST = ["Lopez", "Berg", "Wei", "Kim", "Haddad", "Patel", "Mensah", "Rossi", "Novak", "Tanaka", "Silva", "Okafor"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
TEAMS = ["finance", "sales", "support", "engineering", "legal", "marketing", "logistics", "research"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def distinct_queries(n: int, seed: int = 0) -> list[str]:
    """``n`` different HR-like questions of 8 to 16 tokens, the same for a given seed."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    while len(seen) < n:
        first = rng.choice(FIRST)
        seen[rng.choice(TEMPLATES).format(name=f"{first} {rng.choice(LAST)}", first=first, month=rng.choice(MONTHS),
                                          team=rng.choice(TEAMS), day=rng.choice(DAYS))] = None
    return list(seen)


def synth_routine(i: int, rng: random.Random) -> dict[str, Any]:
    subject, action, audience = rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(AUDIENCES)
    names = rng.sample(STEP_NAMES[:-1], rng.randint(3, 6)) + [STEP_NAMES[-1]]
    steps = [{"step": str(n), "name": name, "description": f"{name} for the {subject} {action}",
              "tool": f"tool_{rng.randint(0, 24)}", "type": "node"} for n, name in enumerate(names, 1)]
    steps[-1]["type"] = "finish"
    return {"id": f"bench.{i:05d}", "name": f"{subject.capitalize()} {action} {i}",
            "description": f"Handle a {subject} {action} {audience}.", "steps": steps}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50) * 1000, 3), "p95_ms": round(percentile(values, 95) * 1000, 3)}


def embedding_throughput(embedder: Embedder, n: int, questions: Iterator[str]) -> dict[str, Any]:
    rng = random.Random(1)
    texts = [routine_text(Routine.model_validate(synth_routine(i, rng)), DEFAULT_RECIPE) for i in range(n)]
    embedder.embed(texts[:8])  # warm-up
    start = time.perf_counter()
    embedder.embed(texts)
    batch_s = time.perf_counter() - start
    singles, fast = [], []
    for q in QUERIES * 4:
        t = time.perf_counter()
        embedder.embed([q])
        singles.append(time.perf_counter() - t)
        q = next(questions)
        t = time.perf_counter()
        embedder.embed_query(q)
        fast.append(time.perf_counter() - t)
    return {"texts": n, "batch_texts_per_s": round(n / batch_s, 1), "mean_words": round(
        statistics.mean(len(t.split()) for t in texts), 1), "single_query": ms(singles), "embed_query": ms(fast),
        "note": "single_query: embed([q]), the path stored vectors take; embed_query: what retrieve uses, a new "
                "question each time (no cache hits)"}


def timed_retrieves(retriever: Retriever, questions: Iterator[str], queries: int) -> dict[str, Any]:
    """``retrieve`` of ``queries`` new questions (none in the embedder's cache), and of one question repeated."""
    cache = retriever.embedder.query_cache
    hits = cache.hits
    full = []
    for _ in range(queries):
        q = next(questions)
        t = time.perf_counter()
        retriever.retrieve(q, k=3)
        full.append(time.perf_counter() - t)
    out = {"retrieve": ms(full), "query_cache_hits": cache.hits - hits}
    repeated = []
    q = next(questions)
    for _ in range(max(queries // 4, 1) + 1):
        t = time.perf_counter()
        retriever.retrieve(q, k=3)
        repeated.append(time.perf_counter() - t)
    out["retrieve_repeated"] = ms(repeated[1:])  # the first one is embedded, the rest come from the cache
    return out


def bench_size(n: int, embedder: Embedder, workdir: Path, *, real_vectors: bool, queries: int,
               questions: Iterator[str]) -> dict[str, Any]:
    rng = random.Random(n)
    with ProcedureStore(workdir / f"bench_{n}.sqlite") as store:
        routines = [synth_routine(i, rng) for i in range(n)]
        t = time.perf_counter()
        saved = store.save_many(routines)
        save_s = time.perf_counter() - t
        retriever = Retriever(store, embedder)
        t = time.perf_counter()
        if real_vectors:
            embedded = retriever.sync()
        else:
            vrng = np.random.default_rng(n)
            vectors = vrng.standard_normal((n, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            rows = [(r.id, r.version, text_hash(routine_text(r, DEFAULT_RECIPE)), vectors[i])
                    for i, r in enumerate(saved)]
            store.put_embeddings(embedder.name, DEFAULT_RECIPE, rows)
            embedded = retriever.sync()
            assert embedded == 0, "synthetic vectors were not recognised as current"
        index_s = time.perf_counter() - t
        t = time.perf_counter()
        retriever.retrieve(next(questions))  # builds the in-memory matrix
        first_s = time.perf_counter() - t
        timed = timed_retrieves(retriever, questions, queries)
        qvecs = embedder.embed(QUERIES)
        search = []
        for i in range(queries):
            t = time.perf_counter()
            retriever.search(qvecs[i % len(QUERIES)], 3)
            search.append(time.perf_counter() - t)
        out = {"routines": n, "vectors": "MiniLM" if real_vectors else "random unit (synthetic)",
               "save_routines_per_s": round(n / save_s, 1), "embed_or_sync_s": round(index_s, 3),
               "embedded": embedded, "first_query_s": round(first_s, 3), **timed, "search_only": ms(search),
               "float16_matrix": n * 384 >= HALF_FROM,
               "sqlite_vec": sqlite_vec_search(store, embedder.name, qvecs, queries)}
        if not real_vectors:
            out["with_examples_and_negatives"] = with_examples(store, retriever, embedder, qvecs, queries, questions)
        print(json.dumps(out), flush=True)
        return out


def with_examples(store: ProcedureStore, retriever: Retriever, embedder: Embedder, qvecs: np.ndarray,
                  queries: int, questions: Iterator[str], per_routine: int = 5,
                  negatives: int = 130) -> dict[str, Any]:
    """The same store with ``per_routine`` example questions per Routine and ``negatives`` negative questions
    (random unit vectors, as for the Routines): what example and negative scoring add to a query."""
    ids = store.ids()
    store.add_examples([(rid, f"example question {j} of {rid}") for rid in ids for j in range(per_routine)])
    store.add_negatives([f"negative question {j}" for j in range(negatives)])
    todo = store.examples_to_embed(embedder.name)
    vectors = np.random.default_rng(len(ids)).standard_normal((len(todo), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.put_example_vectors(embedder.name, [(digest, vectors[i]) for i, (digest, _) in enumerate(todo)])
    t = time.perf_counter()
    retriever.retrieve(next(questions))  # rebuilds the index
    first_s = time.perf_counter() - t
    timed = timed_retrieves(retriever, questions, queries)
    search = []
    for i in range(queries):
        t = time.perf_counter()
        retriever.search(qvecs[i % len(QUERIES)], 3)
        retriever.negative_score(qvecs[i % len(QUERIES)])
        search.append(time.perf_counter() - t)
    return {"examples": len(ids) * per_routine, "negatives": negatives, "first_query_s": round(first_s, 3),
            **timed, "search_only": ms(search), "float16_examples": len(ids) * per_routine * 384 >= HALF_FROM}


def sqlite_vec_search(store: ProcedureStore, model: str, qvecs: np.ndarray, queries: int) -> dict[str, Any]:
    """The same top-3 search with sqlite-vec's brute-force KNN, where this Python can load extensions."""
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        return {"skipped": "this Python's sqlite3 cannot load extensions (no enable_load_extension)"}
    import sqlite_vec

    conn = sqlite3.connect(store.path)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("create virtual table temp.v using vec0(embedding float[384] distance_metric=cosine)")
    conn.execute("insert into temp.v(rowid, embedding) select rowid, vector from embeddings where model = ?", [model])
    times = []
    for i in range(queries):
        t = time.perf_counter()
        conn.execute("select rowid, distance from temp.v where embedding match ? and k = 3",
                     [qvecs[i % len(qvecs)].tobytes()]).fetchall()
        times.append(time.perf_counter() - t)
    conn.close()
    return ms(times)


# ---- accuracy on the HR scenario --------------------------------------------------------------------------

OFF_TOPIC = [  # nothing to do with HR: retrieval should abstain
    "What's the weather in Paris tomorrow?", "Book a meeting room for 3pm on Thursday.", "Reset my VPN password.",
    "What is the capital of Australia?", "Order 20 pens and a whiteboard for the office.",
    "Translate this email into German.", "How do I install Python on my laptop?",
    "Which restaurants are near the office?", "Who won the football match yesterday?",
    "Cancel my flight to Berlin next week.", "Write a poem about autumn.", "My monitor is flickering, can IT replace it?",
    "What is the wifi password for guests?", "Where can I park my bike at the headquarters?",
    "Convert 250 US dollars to euros.", "Schedule a call with the sales team for Monday.",
    "How do I submit a purchase order for new software?", "Is the cafeteria open on Saturday?",
    "What is our company's stock price today?", "Create a Jira ticket for the login bug.",
    "Summarise the attached quarterly sales deck.", "Who is the supplier for our printer paper?", "Tell me a joke.",
    "Recommend a good book on leadership.",
]
OFF_TOPIC_CALIBRATION = [  # used to choose the thresholds; OFF_TOPIC above is only reported
    "Can you fix the printer on the third floor?", "What time does the gym open tomorrow?",
    "Book a table for four at an Italian restaurant tonight.", "How do I set up two-factor authentication on my phone?",
    "What's the exchange rate between yen and pounds?", "Summarise this article about climate change.",
    "Write a haiku about the sea.", "Who painted the Mona Lisa?", "Find me a cheap hotel in Madrid for next weekend.",
    "How do I merge two branches in git?", "Please order a new keyboard for my desk.", "What is the square root of 1764?",
    "Draft a tweet announcing our product launch.", "When is the next train to Amsterdam?",
    "How many calories are in a banana?", "Update the firmware on the conference room display.",
    "What are the best practices for writing unit tests?", "Explain quantum computing in simple terms.",
    "Plan a three-day itinerary for Rome.", "Is it going to rain this afternoon?",
    "Which customers have overdue invoices this quarter?", "Generate a sales forecast for the next six months.",
    "Renew the SSL certificate for our website.", "How do I return a defective product to the vendor?",
    "What's a good recipe for lentil soup?", "Tell me the latest news about the stock market.",
    "Add a new column to the marketing spreadsheet.", "Who is the current president of France?",
    "How do I cancel my streaming subscription?", "Set a reminder to call the dentist on Friday.",
    "What is the shipping status of order 48213?", "Compare the prices of three cloud storage providers.",
    "Recommend some podcasts about history.", "How far is the moon from the earth?",
    "My laptop battery drains too fast, what should I do?", "Create a slide deck for the quarterly board meeting.",
    "What does the error code 0x80070005 mean?", "Can you proofread my cover letter?",
    "Which team won the world cup in 2010?", "Sing me a song about coffee.",
]
HR_UNCOVERED = [  # HR questions that none of the seven Routines handles: the hard case for abstention
    "How many vacation days do Spanish employees get by law?", "Explain what a 401k is.",
    "Change the bank account my salary is paid into.", "Enrol me in the company pension plan.",
    "Submit my travel expense receipts from the Lisbon trip.", "Post a job opening for a senior data engineer.",
    "Update my home address in the HR system.", "Which health insurance options do we offer?",
]


def hr_queries() -> dict[str, list[dict[str, Any]]]:
    from scenarios.hr import load_queries

    return {split: load_queries(split) for split in ("train", "test")}


def accuracy(embedder: Embedder, workdir: Path) -> dict[str, Any]:
    """Top-1 accuracy of every recipe on the HR train and test queries (retrieval over the 7 Routines), the
    best-score distributions, what the default threshold does with covered and uncovered questions; then the
    same with the train queries as example questions, and the threshold calibration."""
    from memory.embeddings import RECIPES
    from memory.retrieval import DEFAULT_THRESHOLD, EXAMPLES_THRESHOLD
    from scenarios.hr import load_routines

    queries = hr_queries()

    def embed_questions(texts: list[str]) -> np.ndarray:  # as retrieve embeds a question
        return np.stack([embedder.embed_query(t) for t in texts])

    vectors = {split: embed_questions([q["query"] for q in qs]) for split, qs in queries.items()}
    outside = {"off_topic": embed_questions(OFF_TOPIC), "hr_uncovered": embed_questions(HR_UNCOVERED),
               "off_topic_calibration": embed_questions(OFF_TOPIC_CALIBRATION)}
    out: dict[str, Any] = {"routines": 7, "queries": {k: len(v) for k, v in queries.items()},
                           "threshold": DEFAULT_THRESHOLD, "recipes": {}}
    with ProcedureStore(workdir / "hr.sqlite") as store:
        store.save_many(load_routines())
        for recipe in RECIPES:
            retriever = Retriever(store, embedder, recipe=recipe)
            row: dict[str, Any] = {}
            for split, qs in queries.items():
                best = [retriever.search(v, 1)[0] for v in vectors[split]]
                scores = np.array([s for _, s in best])
                right = np.array([rid == q["routine_id"] for (rid, _), q in zip(best, qs)])
                row[split] = {"top1": round(float(right.mean()), 4), "right": int(right.sum()), "n": len(qs),
                              "best_score_p5": round(float(np.percentile(scores, 5)), 3),
                              "best_score_p50": round(float(np.median(scores)), 3),
                              "answered_at_threshold": round(float((scores >= DEFAULT_THRESHOLD).mean()), 4)}
            for name, vecs in outside.items():
                scores = np.array([retriever.search(v, 1)[0][1] for v in vecs])
                row[name] = {"n": len(vecs), "max": round(float(scores.max()), 3),
                             "p50": round(float(np.median(scores)), 3),
                             "abstained_at_threshold": round(float((scores < DEFAULT_THRESHOLD).mean()), 4)}
            out["recipes"][recipe] = row
            print(json.dumps({recipe: row}), flush=True)
        plain = Retriever(store, embedder)
        plain_best = {name: best_scores(plain.search, vecs) for name, vecs in {**vectors, **outside}.items()}

        imported = store.import_examples(ROOT / "scenarios" / "hr" / "data" / "queries_train.jsonl")
        retriever = Retriever(store, embedder)
        out["examples"] = examples_accuracy(retriever, store, queries, vectors, imported.added)
        print(json.dumps({"examples": out["examples"]}), flush=True)
        held = held_out_scores(retriever, store, queries, vectors, "phrasing")
        ex_best = {"train": held["train"].max(1), "test": best_scores(retriever.search, vectors["test"]),
                   **{name: best_scores(retriever.search, vecs) for name, vecs in outside.items()}}
    out["thresholds"] = {
        "rule": "highest threshold (0.01 steps) that answers >= 95% of the covered train questions; train "
                "scores with examples have the query's own phrasing held out",
        "without_examples": calibration(plain_best, DEFAULT_THRESHOLD),
        "with_examples": calibration(ex_best, EXAMPLES_THRESHOLD),
    }
    out["threshold_sweep"] = sweep(plain_best)
    out["threshold_sweep_with_examples"] = sweep(ex_best)
    print(json.dumps({"thresholds": out["thresholds"]}), flush=True)
    return out


def best_scores(search: Any, vecs: np.ndarray) -> np.ndarray:
    return np.array([search(v, 1)[0][1] for v in vecs])


def example_rows(store: ProcedureStore, embedder: Embedder) -> tuple[list[str], np.ndarray, list[str]]:
    """The stored example questions: Routine ids, vectors and texts (in the same order)."""
    ids, matrix = store.example_matrix(embedder.name)
    texts = [e.text for e in store.examples()]  # same order: routine id, then insertion
    assert len(texts) == len(ids)
    return ids, matrix, texts


def held_out_scores(retriever: Retriever, store: ProcedureStore, queries: dict[str, list[dict[str, Any]]],
                    vectors: dict[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """Scores (queries x Routines) where each query's Routines are scored only with the examples whose ``key``
    (phrasing or template) differs from the query's: no example shares its wording. Same formula as
    ``Retriever.scores``: ``(1 - w) * text + w * mean of the k nearest examples``."""
    from memory.retrieval import ExampleIndex

    retriever.search(vectors["test"][0], 1)  # embeds and indexes
    ids, matrix = store.embedding_matrix(retriever.embedder.name, retriever.recipe)
    ex_ids, ex_matrix, ex_texts = example_rows(store, retriever.embedder)
    label = {(q["routine_id"], " ".join(q["query"].split())): q[key] for q in queries["train"]}
    ex_key = np.array([label[(rid, text)] for rid, text in zip(ex_ids, ex_texts)])
    w, k = retriever.example_weight, retriever.example_k
    out = {}
    for split, qs in queries.items():
        scores = np.zeros((len(qs), len(ids)), dtype=np.float32)
        for group in sorted({q[key] for q in qs}):
            keep = ex_key != group
            index = ExampleIndex.build(ids, [r for r, kept in zip(ex_ids, keep) if kept], ex_matrix[keep])
            for i in (i for i, q in enumerate(qs) if q[key] == group):
                row = matrix @ vectors[split][i]
                row[index.rows] = (1 - w) * row[index.rows] + w * index.scores(vectors[split][i], k)
                scores[i] = row
        out[split] = scores
    out["ids"] = ids  # type: ignore[assignment]
    return out


def examples_accuracy(retriever: Retriever, store: ProcedureStore, queries: dict[str, list[dict[str, Any]]],
                      vectors: dict[str, np.ndarray], added: int) -> dict[str, Any]:
    def top1(pred: list[str], qs: list[dict[str, Any]]) -> dict[str, Any]:
        right = sum(p == q["routine_id"] for p, q in zip(pred, qs))
        return {"top1": round(right / len(qs), 4), "right": right, "n": len(qs)}

    row: dict[str, Any] = {"examples": added, "weight": retriever.example_weight, "k": retriever.example_k,
                           "all_examples": {split: top1([retriever.search(v, 1)[0][0] for v in vectors[split]], qs)
                                            for split, qs in queries.items()}}
    row["all_examples"]["train"]["note"] = "train queries are their own examples"
    for key in ("phrasing", "template"):
        scores = held_out_scores(retriever, store, queries, vectors, key)
        ids = scores["ids"]
        row[f"{key}_held_out"] = {split: top1([ids[i] for i in scores[split].argmax(1)], qs)
                                  for split, qs in queries.items()}
    return row


def calibration(best: dict[str, np.ndarray], current: float) -> dict[str, Any]:
    """The threshold the rule gives, and what the current default does."""
    grid = [round(t, 2) for t in np.arange(0.05, 0.40, 0.01)]
    chosen = max((t for t in grid if (best["train"] >= t).mean() >= 0.95), default=grid[0])

    def at(t: float) -> dict[str, Any]:
        return {"threshold": t, "train_answered": round(float((best["train"] >= t).mean()), 4),
                "test_false_abstention": round(float((best["test"] < t).mean()), 4),
                **{f"{name}_abstained": round(float((best[name] < t).mean()), 4)
                   for name in ("off_topic_calibration", "off_topic", "hr_uncovered")}}

    return {"calibrated": at(chosen), "default": at(current)}


def sweep(best: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Share of questions answered (not abstained) at several thresholds."""
    return [{"threshold": t, **{f"{name}_answered": round(float((scores >= t).mean()), 3)
                                for name, scores in best.items()}}
            for t in (0.10, 0.12, 0.13, 0.15, 0.17, 0.19, 0.21, 0.25, 0.30)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--real-up-to", type=int, default=100, help="embed for real up to this many Routines")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--throughput-texts", type=int, default=256)
    parser.add_argument("--part", choices=["all", "latency", "accuracy"], default="all")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "retrieval.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    t = time.perf_counter()
    embedder = Embedder()
    dim = embedder.dim
    load_s = time.perf_counter() - t
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    results: dict[str, Any] = {
        "command": "python benchmarks/bench_retrieval.py " + " ".join(sys.argv[1:]),
        "model": {"name": embedder.name, "dim": dim, "load_s": round(load_s, 2),
                  "query_dtype": "bfloat16" if native_bfloat16() else "float32"},
    }
    out = Path(args.out)
    if out.exists():  # keep the other part's numbers (and the machine they were measured on) for one part
        results = {**json.loads(out.read_text()), **results}
    if args.part != "accuracy" or "machine" not in results:
        results["machine"] = machine  # "machine": where the latency part ran
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "accuracy"):
            results["accuracy"] = {"command": results["command"], **accuracy(embedder, Path(tmp)), "machine": machine}
        if args.part in ("all", "latency"):
            results["latency_command"] = results["command"]
            questions = iter(distinct_queries(10_000))
            results["embedding"] = embedding_throughput(embedder, args.throughput_texts, questions)
            print(json.dumps(results["embedding"]), flush=True)
            results["sizes"] = [
                bench_size(n, embedder, Path(tmp), real_vectors=n <= args.real_up_to, queries=args.queries,
                           questions=questions)
                for n in (int(s) for s in args.sizes.split(","))
            ]
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} in {results['total_s']} s")


if __name__ == "__main__":
    main()
