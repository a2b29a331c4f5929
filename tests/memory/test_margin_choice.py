"""How ``benchmarks/cv_retrieval.py`` picks the abstention margins from a sweep: the middle of the pairs meeting
the issue's four targets, else the pair missing them by the least (pure functions on made-up sweep rows)."""

from __future__ import annotations

import pytest

from benchmarks.cv_retrieval import least_shortfall, meets, middle_of_targets, shortfall, sweep


def row(margin: float, uncovered: float, right: float, refused: float, unrelated: float, uncov: float) -> dict:
    return {"margin": margin, "uncovered_margin": uncovered, "covered_right": right, "covered_refused": refused,
            "unrelated_refused": unrelated, "uncovered_refused": uncov}


def test_targets_and_shortfall() -> None:
    assert meets(row(0, 0, 0.95, 0.03, 0.95, 0.70)) and shortfall(row(0, 0, 0.95, 0.03, 0.95, 0.70)) == 0
    assert not meets(row(0, 0, 0.96, 0.04, 0.99, 0.99))
    assert shortfall(row(0, 0, 0.93, 0.05, 0.90, 0.60)) == pytest.approx(0.19)


def test_the_middle_of_the_region_then_the_least_shortfall() -> None:
    good, bad = (0.97, 0.02, 0.97, 0.9), (0.90, 0.08, 0.97, 0.9)
    table = [row(m / 100, u / 100, *(good if 2 <= m <= 6 and -2 <= u <= 2 else bad))
             for m in range(9) for u in range(-4, 5)]
    chosen = middle_of_targets(table)
    assert chosen is not None and (chosen["margin"], chosen["uncovered_margin"]) == (0.04, 0.0)
    missing = [row(0.01, 0, 0.94, 0.03, 0.95, 0.7), row(0.02, 0, 0.90, 0.02, 0.99, 0.9)]
    assert middle_of_targets(missing) is None and least_shortfall(missing)["margin"] == 0.01


def test_sweep_scores_each_pair_from_the_gaps() -> None:
    rows = [
        {"routine_id": "a", "best": "a", "score": 0.5, "threshold": 0.3, "gap": 0.10, "gap_uncovered": 0.0},
        {"routine_id": None, "kind": "unrelated", "best": "a", "score": 0.5, "threshold": 0.3, "gap": 0.05,
         "gap_uncovered": 0.3},
        {"routine_id": None, "kind": "uncovered", "best": "a", "score": 0.5, "threshold": 0.3, "gap": 0.3,
         "gap_uncovered": -0.05},
    ]
    table = {(t["margin"], t["uncovered_margin"]): t for t in sweep(rows)}
    assert table[(0.08, -0.02)] == {"margin": 0.08, "uncovered_margin": -0.02, "covered_right": 1.0,
                                    "covered_refused": 0.0, "negatives_refused": 1.0, "uncovered_refused": 1.0,
                                    "unrelated_refused": 1.0}
    assert table[(0.11, 0.0)]["covered_refused"] == 1.0 and table[(0.04, -0.06)]["negatives_refused"] == 0.0
