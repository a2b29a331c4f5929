"""Phrasing augmentation from the scenario's own templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.augment import ANY, augment, collect_phrasings, fill, load_template_file, phrasings, slot_values

BASE = ["What is {name}'s salary? {name} works in {dept}.", "How much does {name} from {dept} earn?",
        "Look up the pay of {name} in {dept}, please.", "I need the pay of {name}, {title} in {dept}."]
TEMPLATES = {"hr.salary/4-1": [{"key": "salary.base", "phrasings": BASE},
                               {"key": "salary.self", "phrasings": ["What is my salary?", "How much do I earn?"]}]}


def query(qid: str, key: str, phrasing: str, **values: str) -> dict[str, Any]:
    return {"id": qid, "query": fill(phrasing, values), "routine_id": "hr.salary", "variant": "hr.salary/4-1",
            "template": key, "phrasing": phrasing, "inputs": {"employee_name": values.get("name", "")}}


def test_slot_values_read_the_query_back() -> None:
    assert slot_values(BASE[0], "What is Ada Byron's salary? Ada Byron works in Sales (EMEA).") == {
        "name": "Ada Byron", "dept": "Sales (EMEA)"}
    assert slot_values(BASE[0], "What is Ada's salary? Alan works in Sales.") is None  # a repeated slot must agree
    assert fill("Pay of {{ name }}?", {"name": "Ada"}) == "Pay of Ada?" and fill(BASE[3], {"name": "Ada"}) is None


def test_other_phrasings_of_the_same_template_with_the_same_slots(tmp_path: Path) -> None:
    path = tmp_path / "query_templates.json"
    path.write_text(json.dumps(TEMPLATES))
    sets = load_template_file(path)
    assert sets[("hr.salary/4-1", "salary.base")] == BASE
    q = query("q1", "salary.base", BASE[1], name="Ada Byron", dept="Sales")
    assert phrasings(q, sets) == [  # not BASE[3]: it needs a title the query did not give
        (BASE[0], "What is Ada Byron's salary? Ada Byron works in Sales."),
        (BASE[2], "Look up the pay of Ada Byron in Sales, please."),
    ]
    me = query("q2", "salary.self", "What is my salary?")
    assert phrasings(me, sets) == [("How much do I earn?", "How much do I earn?")]
    assert phrasings({**q, "query": "Tell me about Ada."}, sets) == []  # the text does not fit its phrasing


def test_phrasings_from_the_query_records_alone() -> None:
    """Toy-style records whose ``template`` is the phrasing itself: all of a group's phrasings interchange."""
    rows = [{"id": f"q{i}", "query": fill(t, {"who": w}), "template": t, "variant": "toy.x"}
            for i, (t, w) in enumerate([("Pay of {who}?", "Ada"), ("What does {who} earn?", "Alan")])]
    sets = collect_phrasings(rows)
    assert sets == {("toy.x", ANY): ["Pay of {who}?", "What does {who} earn?"]}
    assert phrasings(rows[0], sets) == [("What does {who} earn?", "What does Ada earn?")]


def test_augment_is_deterministic_and_names_its_sources(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(TEMPLATES))
    sets = load_template_file(path)
    queries = [query(f"q{i}", "salary.base", BASE[i % 3], name=n, dept="Sales")
               for i, n in enumerate(["Ada", "Alan", "Grace", "Edsger"])]
    queries.append({"id": "q9", "query": "Count Sales", "variant": "hr.count"})
    extra, without = augment(queries, 1, seed=3, templates=sets)
    assert without == ["q9"]
    assert [e["id"] for e in extra] == ["q0~a1", "q1~a1", "q2~a1", "q3~a1"]
    for e in extra:
        original = queries[int(e["id"][1])]
        assert e["augmented_from"] == original["id"] and e["phrasing"] != original["phrasing"]
        assert e["query"] == fill(e["phrasing"], slot_values(original["phrasing"], original["query"]) or {})
        assert e["inputs"] == original["inputs"] and e["template"] == "salary.base"
    assert augment(queries, 1, seed=3, templates=sets) == (extra, without)
    assert len({tuple(e["query"] for e in augment(queries, 1, seed=s, templates=sets)[0]) for s in range(8)}) > 1
    assert len(augment(queries, 5, templates=sets)[0]) == 8 and augment(queries, 0) == ([], [])
