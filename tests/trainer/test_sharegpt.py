"""ShareGPT records: LLaMA-Factory's format rules, dataset_info.json, and reading records back."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from routines.backends.base import Message, ToolSpec
from routines.calls import ToolCall, parse_tool_call
from routines.prompt import build_system_prompt
from routines.trajectory import Call, Trajectory
from trainer.sharegpt import DatasetFormatError, build_record, check_record, load_dataset, write_dataset

TOOLS = [
    ToolSpec("search_employee", "Find an employee.", {"type": "object", "properties": {"name": {"type": "string"}}}),
    ToolSpec("summarize", "Write the answer.", {"type": "object", "properties": {"facts": {"type": "object"}}}),
]
CALLS = [ToolCall("search_employee", {"name": "Ada"}), ToolCall("summarize", {"facts": "memory_search_employee"})]
OBSERVATION = 'memory_search_employee = {"employee_id": "E-01"}'


def record(record_id: str = "q-1") -> dict[str, Any]:
    calls = (Call("1", CALLS[0].name, CALLS[0].arguments, OBSERVATION), Call("2", CALLS[1].name, CALLS[1].arguments, ""))
    return build_record(
        record_id=record_id, trajectory=Trajectory("Who is Ada?", calls, answer="Ada is E-01."),
        system=build_system_prompt(routines=[], tools=TOOLS), tools=TOOLS, query_id=record_id,
        routine_id="r", routine_in_prompt=False,
    )


def problems(rec: dict[str, Any]) -> list[str]:
    return check_record(rec, "record 0")[1]


def test_record_follows_llama_factory_rules() -> None:
    rec = record()
    roles = [t["from"] for t in rec["conversations"]]
    assert roles == ["human", "function_call", "observation", "function_call"]
    assert json.loads(rec["conversations"][1]["value"]) == {"name": "search_employee", "arguments": {"name": "Ada"}}
    assert isinstance(rec["tools"], str) and [t["name"] for t in json.loads(rec["tools"])] == ["search_employee", "summarize"]
    conv, found = check_record(rec)
    assert found == [] and conv is not None
    assert conv.calls == CALLS and conv.observations == [OBSERVATION] and conv.answer == "Ada is E-01."
    assert conv.extra == {"query_id": "q-1", "routine_id": "r", "routine_in_prompt": False}
    assert "systems" not in rec  # one system prompt per record: the conversation is append-only


def test_messages_and_targets_are_what_the_executor_sends_and_parses() -> None:
    conv, _ = check_record(record())
    assert conv is not None
    first, second = conv.messages(0), conv.messages(1)
    assert first == [Message("system", build_system_prompt(routines=[], tools=TOOLS)), Message("user", "Who is Ada?")]
    # append-only: the messages before call 1 are those before call 0, then call 0 and its result
    assert second == first + [Message("assistant", CALLS[0].text()), Message("tool", OBSERVATION)]
    assert [parse_tool_call(target) for _, target in conv.steps()] == CALLS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["conversations"].pop(), "3 turns; LLaMA-Factory needs an even number"),
        (lambda r: r["conversations"].insert(1, {"from": "observation", "value": "x"}), "turn 1 is 'observation'"),
        (lambda r: r["conversations"].__setitem__(0, {"from": "gpt", "value": "x"}), "turn 0 is 'gpt'"),
        (lambda r: r.__setitem__("tools", json.loads(r["tools"])), "'tools' must be a JSON string"),
        (lambda r: r.__setitem__("tools", "[{"), "'tools' is not valid JSON"),
        (lambda r: r["conversations"][1].__setitem__("value", '{"name": "fire_everyone", "arguments": {}}'),
         "function_call 'fire_everyone' is not in 'tools'"),
        (lambda r: r["conversations"][3].__setitem__("value", "<tool_call>{}</tool_call>"), "not valid JSON"),
        (lambda r: r.__setitem__("tools", json.dumps(list(reversed(json.loads(r["tools"]))))),
         "'tools' is not the tool list of the system prompt, in its order"),
    ],
)
def test_broken_records_are_reported(change: Any, message: str) -> None:
    rec = copy.deepcopy(record())
    change(rec)
    found = problems(rec)
    assert found and any(message in p for p in found), found
    assert all(p.startswith("record 0 (id q-1)") for p in found)


def test_write_and_load_through_dataset_info(tmp_path: Path) -> None:
    (tmp_path / "dataset_info.json").write_text(json.dumps({"alpaca_en": {"file_name": "alpaca.json"}}))
    data_path, info_path = write_dataset([record("a"), record("b")], tmp_path, "toy_train")
    info = json.loads(info_path.read_text())
    assert set(info) == {"alpaca_en", "toy_train"}  # other datasets are kept
    assert info["toy_train"] == {
        "file_name": "toy_train.jsonl", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},  # the tools are listed once, in system
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "function_tag": "function_call", "observation_tag": "observation"},
    }
    assert [c.id for c in load_dataset(tmp_path, "toy_train")] == ["a", "b"]
    assert [c.id for c in load_dataset(data_path)] == ["a", "b"]
    with pytest.raises(DatasetFormatError, match="lists 2 datasets"):
        load_dataset(tmp_path)
    _, info_path = write_dataset([record()], tmp_path / "listed", "x", tools_column=True)
    assert json.loads(info_path.read_text())["x"]["columns"]["tools"] == "tools"


def test_load_reports_the_broken_records(tmp_path: Path) -> None:
    good, bad = record("good"), record("bad")
    bad["conversations"].pop()
    path = tmp_path / "d.json"
    path.write_text(json.dumps([good, bad]))
    with pytest.raises(DatasetFormatError, match=r": 1 problem\(s\): record 1 \(id bad\): 3 turns"):
        load_dataset(path)
    (tmp_path / "e.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DatasetFormatError, match="line 2: not valid JSON"):
        load_dataset(tmp_path / "e.jsonl")
