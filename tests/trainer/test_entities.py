"""Entity-swapped extraction examples: made-up names from the split's own values, never a value it has."""

from __future__ import annotations

from typing import Any

from routines.scenario import Scenario
from trainer.entities import entity_variants, value_pools
from trainer.train import extraction_queries


def q(qid: str, text: str, **inputs: str) -> dict[str, Any]:
    return {"id": qid, "query": text, "routine_id": "hr.salary", "inputs": inputs}


QUERIES = [
    q("a", "What is Maria Aziz's salary in Data and AI?", employee_name="Maria Aziz", department="Data and AI"),
    q("b", "Pay of Tom Becker (Site Reliability)?", employee_name="Tom Becker", department="Site Reliability"),
    q("c", "What does Lena Vogel in Developer Tools earn?", employee_name="Lena Vogel", department="Developer Tools"),
    q("d", "What is my salary?", employee_name="Ann Lee", department="Payroll"),  # nothing written: no copy
]


def test_pools_hold_multi_word_values_the_text_writes() -> None:
    pools = value_pools(QUERIES)
    assert pools["employee_name"] == ["Maria Aziz", "Tom Becker", "Lena Vogel"]
    assert pools["department"] == ["Data and AI", "Site Reliability", "Developer Tools"]  # "Payroll": one word


def test_copies_carry_new_values_in_text_and_inputs() -> None:
    copies = entity_variants(QUERIES, 2, seed=1)
    assert [c["id"] for c in copies] == ["a~e1", "a~e2", "b~e1", "b~e2", "c~e1", "c~e2"]
    known = {v for query in QUERIES for v in query["inputs"].values()}
    for c in copies:
        original = next(o for o in QUERIES if o["id"] == c["augmented_from"])
        for name, value in c["inputs"].items():
            assert value not in known and value in c["query"]
            assert original["inputs"][name] not in c["query"]
    assert entity_variants(QUERIES, 2, seed=1) == copies  # deterministic
    assert entity_variants(QUERIES, 0) == []


def test_two_inputs_holding_one_value_get_one_new_value() -> None:
    both = q("e", "Give me the overview of Site Reliability.", department="Site Reliability",
             department_name="Site Reliability")
    for copy in entity_variants([*QUERIES, both], 3, seed=2)[-3:]:
        new = copy["inputs"]["department"]
        assert copy["inputs"]["department_name"] == new and new in copy["query"] and "Site Reliability" not in copy["query"]


def test_hr_extraction_examples_add_n_renamed_rewordings_per_query() -> None:
    scenario = Scenario.load("hr")
    train = scenario.queries("train")
    first_person = len(scenario.extraction_examples())
    queries = extraction_queries(scenario, "train", 1, seed=0)[: -first_person or None]
    extra = queries[len(train):]
    assert queries[: len(train)] == train and 400 < len(extra) <= len(train)
    twice = extraction_queries(scenario, "train", 2, seed=0)[len(train): -first_person or None]
    assert len(twice) == 2 * len(extra) and len({c["id"] for c in twice}) == len(twice)
    written = {v for t in train for v in (t.get("inputs") or {}).values()}
    held_out = {v for t in scenario.queries("test") for v in (t.get("inputs") or {}).values() if isinstance(v, str)}
    for e in extra:
        new = [v for k, v in e["inputs"].items() if isinstance(v, str) and " " in v and v in e["query"]]
        assert new and not (set(new) & written)
    # made only from train values: a held-out name appears only by chance, never as a pattern
    assert sum(v in held_out for e in extra for v in e["inputs"].values() if isinstance(v, str) and " " in v) < 20
