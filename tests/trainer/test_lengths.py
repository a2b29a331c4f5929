"""Call and prompt lengths of a distilled dataset (design 4.2: no call over about 100 tokens): the statistics
with a plain word counter (fast), and the HR gold calls in the embedded model's tokens (``model`` marker)."""

from __future__ import annotations

import json

import pytest

from memory.variables import calls_as_written
from routines.backends.base import ToolSpec
from routines.calls import ToolCall
from routines.model import Routine
from routines.prompt import PromptOptions, build_system_prompt
from routines.scenario import Scenario
from routines.trajectory import Call, Trajectory
from tests.fixtures.toy_server import SALARY_ROUTINE
from trainer.lengths import CALL_TOKEN_LIMIT, dataset_lengths, describe, distribution
from trainer.sharegpt import build_record, call_value

SALARY = Routine.from_file(SALARY_ROUTINE)
TOOLS = [ToolSpec(name, f"The {name} tool.", {"type": "object", "properties": {"x": {"type": "string"}}})
         for name in ("get_user_profile", "search_employee", "delete_records", "get_salary", "get_salary_band",
                      "summarize", "send_note")]


def words(text: str) -> int:
    return len(text.split())


def test_distribution_counts_the_values_over_the_limit() -> None:
    assert distribution([5, 1, 3, 120, 2], limit=100) == {"n": 5, "median": 3, "p95": 120, "max": 120, "over_100": 1}
    assert distribution([]) == {"n": 0}


def test_dataset_lengths_measure_the_calls_and_both_prompt_settings() -> None:
    listed = [t for t in TOOLS if t.name in SALARY.tools()]
    calls = [ToolCall("get_user_profile", {"user_id": "u-hr"}), ToolCall("summarize", {"data": "memory_get_salary"})]
    trajectory = Trajectory("Ada?", (Call("1", calls[0].name, calls[0].arguments, "memory_get_user_profile = {}"),
                                     Call("2", calls[1].name, calls[1].arguments, "")))
    record = build_record(record_id="q", trajectory=trajectory, tools=listed,
                          system=build_system_prompt(routines=[SALARY], tools=listed),
                          query_id="q", routine_id="example.salary", routine_in_prompt=True)
    lengths = dataset_lengths([record], {"example.salary": SALARY}, TOOLS, PromptOptions(), count=words)
    assert lengths["call_tokens"] == distribution([words(call_value(c)) for c in calls], CALL_TOKEN_LIMIT)
    assert lengths["system_tokens"]["max"] == words(record["system"])
    by_setting = lengths["system_tokens_by_routine"]
    assert by_setting["routine"] == {"example.salary": words(record["system"])}  # the record's own prompt
    assert by_setting["all"]["example.salary"] > by_setting["routine"]["example.salary"]  # two more tools listed
    lines = describe(lengths)
    assert lines[0] == f"call tokens: median {lengths['call_tokens']['median']}, p95 {lengths['call_tokens']['p95']}, " \
                       f"max {lengths['call_tokens']['max']}; 0 of 2 over 100"
    assert [line.split(":")[0] for line in lines[2:]] == [
        "system prompt tokens per Routine, tools_in_prompt=routine", "system prompt tokens per Routine, tools_in_prompt=all"]
    assert describe({"tokenizer": None, "note": "no tokenizer"}) == ["lengths: no tokenizer"]


@pytest.mark.model
@pytest.mark.parametrize("split", ["train", "test"])
def test_no_hr_gold_call_is_longer_than_100_tokens_as_a_model_writes_it(split: str) -> None:
    """Issue 13's target: every HR call, earlier results passed by their keys, fits in 100 SmolLM2 tokens."""
    from trainer.lengths import smollm2_counter

    count = smollm2_counter()
    assert count is not None, "the embedded model's tokenizer is not installed"
    sizes = [count(json.dumps({"name": c["name"], "arguments": c["arguments"]}, ensure_ascii=False))
             for g in Scenario.load("hr").gold(split) for c in calls_as_written(g["calls"], threshold=256)]
    assert len(sizes) > 1000 if split == "train" else len(sizes) == 1140
    assert max(sizes) <= CALL_TOKEN_LIMIT, sorted(sizes)[-5:]
