"""One judge of "does this run match its gold?" (evals/gold.py): the checker, plus exact values where the
text is learned or shown as it is."""

from __future__ import annotations

from evals.gold import answers_match, gold_differences, mismatches, written_gold
from routines.backends.base import ToolSpec
from routines.calls import ToolCall
from routines.trajectory import Call

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "data": {"type": "object"}}}
TOOLS = [ToolSpec("search_department", "Find a department.", SCHEMA), ToolSpec("summarize", "Answer.", SCHEMA)]
MEMBERS = {"members": ["E-1", "E-2"], "note": "x" * 300}
GOLD = {"id": "q", "calls": [
    {"step": "1", "name": "search_department", "arguments": {"name": "Enterprise Systems"}, "result": MEMBERS},
    {"step": "3-1_1", "name": "summarize", "arguments": {"data": MEMBERS}, "result": {"answer": "two"},
     "free_text": {"name": True}},
]}


def run(*calls: tuple[str, str, dict]) -> list[Call]:
    return [Call(step, tool, args, "") for step, tool, args in calls]


def test_a_run_that_makes_the_gold_calls_matches_with_references_written_as_keys() -> None:
    made = run(("1", "search_department", {"name": "Enterprise Systems"}),
               ("3-1_1", "summarize", {"data": "memory_search_department"}))
    assert gold_differences(GOLD, made, TOOLS, threshold=256) == []
    assert [c.arguments for c in written_gold(GOLD, 256)][1] == {"data": "memory_search_department"}
    assert written_gold(GOLD, 256)[1].free_text == ("name",)  # the {"param": true} form


def test_gold_comparison_is_exact_where_the_checker_normalises() -> None:
    shouted = run(("1", "search_department", {"name": "ENTERPRISE SYSTEMS"}),
                  ("3-1_1", "summarize", {"data": "memory_search_department"}))
    expected = written_gold(GOLD, 256)
    assert mismatches(expected, shouted, TOOLS) == []  # the checker's verdict: right up to case
    (problem,) = mismatches(expected, shouted, TOOLS, exact=True)
    assert problem.startswith("call 1 (search_department): name=") and "not exactly the gold" in problem
    assert gold_differences(GOLD, shouted, TOOLS, threshold=256) == [problem]


def test_a_copied_value_instead_of_its_key_and_a_wrong_step_differ() -> None:
    copied = run(("1", "search_department", {"name": "Enterprise Systems"}),
                 ("3-1_1", "summarize", {"data": MEMBERS}))
    (problem,) = gold_differences(GOLD, copied, TOOLS, threshold=256)
    assert problem.startswith("call 2 (summarize)") and len(problem) <= 240  # long values are cut
    elsewhere = run(("1", "search_department", {"name": "Enterprise Systems"}),
                    ("4", "summarize", {"data": "memory_search_department"}))
    assert gold_differences(GOLD, elsewhere, TOOLS, threshold=256) == ["call 2: step 4, gold step 3-1_1"]
    assert gold_differences(GOLD, elsewhere, TOOLS, threshold=256, steps=False) == []  # a flattened variant


def test_gold_without_results_is_compared_with_what_the_tools_got() -> None:
    gold = {"calls": [{"step": "1", "name": "summarize", "arguments": {"data": MEMBERS}}]}
    made = [Call("1", "summarize", {"data": "memory_x"}, "", resolved_arguments={"data": MEMBERS})]
    assert gold_differences(gold, made, TOOLS, threshold=256) == []
    assert gold_differences(gold, [], TOOLS, threshold=256) == ["0 calls, gold has 1"]
    assert gold_differences({"calls": []}, [], TOOLS, threshold=256) == []


def test_an_unknown_gold_tool_and_plain_tool_calls() -> None:
    expected = [Call("1", "drop_table", {}, "")]
    assert mismatches(expected, [ToolCall("drop_table", {})], TOOLS) == ["call 1: gold tool drop_table is not among the tools"]
    right = [ToolCall("search_department", {"name": "enterprise systems"})]
    assert mismatches(written_gold(GOLD, 256)[:1], right, TOOLS) == []  # end to end: the checker's verdict
    assert answers_match("Two  employees", "two employees") and not answers_match(None, "x")
