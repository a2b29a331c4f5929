"""Distillation of the toy scenario: one clean record per query, the executor's exact prompts, drops named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from routines.backends.scripted import ScriptedBackend
from routines.hub import ToolHub
from routines.scenario import Scenario
from trainer.distill import DistillOptions, distill
from trainer.sharegpt import load_dataset

pytestmark = pytest.mark.anyio


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def calls_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(t["value"]) for t in record["conversations"] if t["from"] == "function_call"]


NO_LENGTHS = DistillOptions(lengths=False)
"""The default options without the token-length statistics (they load the embedded model's tokenizer)."""


async def bound_records(toy_dir: Path, servers: dict[str, Any], out: Path, **options: Any) -> list[dict[str, Any]]:
    options.setdefault("lengths", False)
    report = await distill(toy_dir, out_dir=out, data_dir=out, servers=servers, options=DistillOptions(**options))
    assert report.dropped == []
    return read_jsonl(report.out_path)


async def test_bound_teacher_gives_one_checked_record_per_query(toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path) -> None:
    progress: list[tuple[int, int, str]] = []
    report = await distill(toy_dir, out_dir=tmp_path, data_dir=tmp_path, servers=toy_servers, options=NO_LENGTHS,
                           on_progress=lambda done, total, msg: progress.append((done, total, msg)))
    queries = Scenario.load(toy_dir).queries("train")
    assert (report.queries, report.kept, report.records, report.dropped) == (5, 5, 5, [])
    assert report.gold_checked == 5 and report.calls == 20
    assert [p[:2] for p in progress] == [(i, 5) for i in range(1, 6)]
    assert report.dataset_info_path == tmp_path / "dataset_info.json"
    assert json.loads(report.report_path.read_text())["records"] == 5

    records = read_jsonl(report.out_path)
    assert [r["id"] for r in records] == [q["id"] for q in queries]
    assert [[c["name"] for c in calls_of(r)] for r in records][:2] == [
        ["get_user_profile", "search_employee", "get_salary", "summarize"],
        ["get_user_profile", "search_employee", "get_salary_band", "summarize"],
    ]
    headcount = records[3]
    assert calls_of(headcount)[2] == {"name": "count_people", "arguments": {"members": "memory_members"}}
    assert headcount["answer"] == "headcount: count=27"
    # the finish step passes the counted result by its key instead of copying it
    assert calls_of(headcount)[3] == {"name": "summarize", "arguments": {"topic": "headcount", "facts": "memory_count_people"}}
    # each key is shown in the observation that creates it (the long list as a preview only); the one system
    # prompt has no variables block: the conversation is append-only
    observation = headcount["conversations"][4]["value"]
    assert observation.startswith('memory_list_department = {"department": "Sales", "members": "memory_members"}\n'
                                  'memory_members = ["Sales Employee 01", ')
    assert "Sales Employee 27" not in observation
    assert "systems" not in headcount and "<variables>" not in headcount["system"]
    assert report.lengths == {}  # not asked for
    conversations = load_dataset(tmp_path)
    assert [len(c.calls) for c in conversations] == [4] * 5


@pytest.mark.parametrize("tools_in_prompt", ["routine", "all"])
@pytest.mark.parametrize("with_routine", [True, False])
async def test_prompts_are_exactly_what_the_executor_builds(
    toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path, with_routine: bool, tools_in_prompt: str,
    replay_run: Callable[..., Any],
) -> None:
    """Replay every record through the executor in model mode with the record's tool order: the messages the
    model gets before call k are the record's, byte for byte (the one system prompt, history, query)."""
    records = await bound_records(toy_dir, toy_servers, tmp_path, with_routine=with_routine,
                                  tools_in_prompt=tools_in_prompt)
    conversations = load_dataset(tmp_path)
    scenario = Scenario.load(toy_dir)
    routines = scenario.routine_map()
    queries = {q["id"]: q for q in scenario.queries("train")}
    async with ToolHub(toy_servers) as hub:
        all_tools = {t.name for t in await hub.list_tools()}
        for record, conv in zip(records, conversations):
            q = queries[record["id"]]
            requests = await replay_run(hub, routines[q["routine_id"]], q, record, conv, with_routine=with_routine,
                                        tools_in_prompt=tools_in_prompt)
            assert len(requests) == len(conv.calls)
            for k, request in enumerate(requests):
                assert request == conv.messages(k)
                assert request[0].content == record["system"]
            assert ("<routines>" in record["system"]) is with_routine
            listed = {t.name for t in conv.tools}
            # the Routine's tools, unless the prompt hides the Routine: then every tool, as without a Routine
            own = tools_in_prompt == "routine" and with_routine
            assert listed == (set(routines[q["routine_id"]].tools()) if own else all_tools)


async def test_model_teacher_gives_the_same_records(
    toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path, replay: Callable[..., Any]
) -> None:
    records = await bound_records(toy_dir, toy_servers, tmp_path / "bound")
    teacher = replay(records)
    report = await distill(toy_dir, teacher=teacher, out_dir=tmp_path / "model", data_dir=tmp_path, servers=toy_servers,
                           options=NO_LENGTHS)
    assert report.teacher == "scripted" and report.dropped == []
    assert read_jsonl(report.out_path) == records
    # the teacher saw exactly the records' prompts (the Routine in them, the record's tool order), one per call
    assert [r[0].content for r in teacher.requests] == [r["system"] for r in records for _ in calls_of(r)]


async def test_failing_teacher_yields_fewer_records_and_names_them(
    toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path, replay: Callable[..., Any]
) -> None:
    records = await bound_records(toy_dir, toy_servers, tmp_path / "bound")
    teacher = replay(records, fail=["q-02"], stumble=["q-04"])
    report = await distill(toy_dir, teacher=teacher, out_dir=tmp_path / "model", data_dir=tmp_path, servers=toy_servers,
                           options=NO_LENGTHS)
    assert (report.queries, report.records) == (5, 3)
    reasons = {d["id"]: d["reason"] for d in report.dropped}
    assert set(reasons) == {"q-02", "q-04"}
    assert "no acceptable call" in reasons["q-02"]
    assert reasons["q-04"].startswith("failed attempt at step") and "get_weather" in reasons["q-04"]
    assert [r["id"] for r in read_jsonl(report.out_path)] == ["q-01", "q-03", "q-05"]
    saved = json.loads(report.report_path.read_text())
    assert saved["dropped"] == report.dropped


async def test_bound_run_that_fails_is_dropped_with_the_tool_error(
    toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path
) -> None:
    queries = Scenario.load(toy_dir).queries("train")[:2] + [
        {"id": "q-x", "query": "What does Nobody earn?", "routine_id": "toy.salary", "user_id": "u-hr",
         "inputs": {"employee_name": "Nobody"}},
        {"id": "q-y", "query": "Book a flight", "routine_id": "toy.travel", "user_id": "u-hr", "inputs": {}},
    ]
    report = await distill(toy_dir, out_dir=tmp_path, data_dir=tmp_path, servers=toy_servers, queries=queries,
                           options=NO_LENGTHS)
    assert report.records == 2
    reasons = {d["id"]: d["reason"] for d in report.dropped}
    assert "no employee matches 'Nobody'" in reasons["q-x"]
    assert reasons["q-y"] == "no Routine 'toy.travel' in the scenario"


async def test_a_trajectory_that_differs_from_gold_is_dropped(toy_copy: Path, toy_servers: dict[str, Any], tmp_path: Path) -> None:
    gold_path = toy_copy / "data" / "gold_train.jsonl"
    gold = read_jsonl(gold_path)
    gold[0]["calls"][1]["arguments"]["name"] = "Ada"  # the gold searched differently
    gold[1]["answer"] = "something else"
    gold[2]["calls"][3]["arguments"]["topic"] = "pay"  # free text: a different wording is fine
    gold_path.write_text("".join(json.dumps(g) + "\n" for g in gold))
    report = await distill(toy_copy, out_dir=tmp_path, data_dir=tmp_path, servers=toy_servers, options=NO_LENGTHS)
    reasons = {d["id"]: d["reason"] for d in report.dropped}
    assert reasons == {
        "q-01": "differs from gold: call 2 (search_employee): 'name' is 'Ada Lovelace', expected 'Ada'",
        "q-02": 'differs from gold: answer "salary: band=B3, employee_id=E-02, name=Alan Turing" differs from gold '
                '"something else"',
    }
    unchecked = await distill(toy_copy, out_dir=tmp_path / "all", data_dir=tmp_path, servers=toy_servers,
                              options=DistillOptions(check_gold=False, lengths=False))
    assert (unchecked.records, unchecked.gold_checked) == (5, 0)


def orders(records: list[dict[str, Any]]) -> list[list[str]]:
    return [[t["name"] for t in json.loads(r["tools"])] for r in records]


async def test_tool_order_is_seeded_per_record(toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path) -> None:
    """The paper's dataset (every tool listed): one seeded order per record."""
    first = await bound_records(toy_dir, toy_servers, tmp_path / "a", tools_in_prompt="all")
    again = await bound_records(toy_dir, toy_servers, tmp_path / "b", tools_in_prompt="all")
    other = await bound_records(toy_dir, toy_servers, tmp_path / "c", seed=7, tools_in_prompt="all")
    plain = await bound_records(toy_dir, toy_servers, tmp_path / "d", shuffle_tools=False, tools_in_prompt="all")
    assert first == again
    assert len({tuple(o) for o in orders(first)}) == 5  # nine tools: five different orders
    assert orders(other) != orders(first)
    assert all(sorted(o) == sorted(orders(plain)[0]) for o in orders(first))
    assert orders(plain) == [orders(plain)[0]] * 5 and orders(plain)[0][0] == "get_user_profile"
    assert len(orders(plain)[0]) == 9
    for record in first:  # the tools column and the prompt list the tools in the same order
        lines = record["system"].split("<tools>\n")[1].split("\n</tools>")[0].split("\n")
        assert [json.loads(line)["name"] for line in lines] == [t["name"] for t in json.loads(record["tools"])]


async def test_by_default_records_list_only_the_routines_tools_in_the_seeded_order(
    toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path
) -> None:
    product = await bound_records(toy_dir, toy_servers, tmp_path / "a")
    paper = await bound_records(toy_dir, toy_servers, tmp_path / "b", tools_in_prompt="all")
    routines = Scenario.load(toy_dir).routine_map()
    for record, listed, every in zip(product, orders(product), orders(paper)):
        assert set(listed) == set(routines[record["routine_id"]].tools())
        assert listed == [name for name in every if name in listed]  # the same seeded order, filtered
        assert "get_weather" not in record["system"] and "get_weather" in paper[0]["system"]
        assert calls_of(record) == calls_of(paper[product.index(record)])  # the protocol changes the prompt only
    assert len(orders(product)[0]) == 5 and len(orders(product)[3]) == 4
    plain = await bound_records(toy_dir, toy_servers, tmp_path / "c", shuffle_tools=False)
    assert orders(plain)[3] == ["get_user_profile", "list_department", "count_people", "summarize"]  # servers' order


async def test_internalised_records_list_every_tool_like_a_run_without_routine(
    toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path
) -> None:
    records = await bound_records(toy_dir, toy_servers, tmp_path / "a", with_routine=False, tools_in_prompt="routine")
    assert all("<routines>" not in r["system"] and "Rules:\n- Work out which tools" in r["system"] for r in records)
    assert all(r["routine_in_prompt"] is False for r in records)
    listed = sorted(t["name"] for t in json.loads(records[3]["tools"]))
    # no Routine in the prompt, so every tool of the server, as a run without a Routine lists them
    assert {"count_people", "get_user_profile", "list_department", "summarize"} < set(listed)
    assert "get_weather" in listed
    assert (tmp_path / "a" / "toy_train_noroutine.jsonl").exists()


async def test_augmentation_adds_reworded_records(toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path) -> None:
    report = await distill(toy_dir, out_dir=tmp_path, data_dir=tmp_path, servers=toy_servers,
                           options=DistillOptions(augment=3, lengths=False))
    records = read_jsonl(report.out_path)
    assert report.augmented == 4 and report.records == 9 and report.without_phrasings == ["q-02"]
    extra = {r["id"]: r for r in records if "~" in r["id"]}
    assert extra["q-01~a1"]["conversations"][0]["value"] == "Tell me the pay of Ada Lovelace."
    assert extra["q-01~a1"]["query_id"] == "q-01"
    original = next(r for r in records if r["id"] == "q-01")
    assert calls_of(extra["q-01~a1"]) == calls_of(original)


async def test_flattened_variants(toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path) -> None:
    records = await bound_records(toy_dir, toy_servers, tmp_path, flatten=True)
    assert [r["routine_id"] for r in records] == [
        "toy.salary/3-1", "toy.salary/3-2", "toy.salary/3-1", "toy.headcount", "toy.headcount"]
    block = records[0]["system"].split("<routines>\n")[1].split("\n</routines>")[0]
    assert block.split("\n")[2:] == [
        "Step 3. Full salary: If the user is in HR, get the salary, use the get_salary tool;",
        "Step 4. Answer: Summarise for the user, use the summarize tool, and end the workflow;",
    ]


async def test_an_unreachable_teacher_drops_the_query_and_stops_when_it_never_answers(
    toy_dir: Path, toy_servers: dict[str, Any], tmp_path: Path, replay: Callable[..., Any]
) -> None:
    records = await bound_records(toy_dir, toy_servers, tmp_path / "bound")
    good = replay(records)

    def flaky(messages: Any) -> str:
        if messages[1].content == records[1]["conversations"][0]["value"]:
            raise ConnectionError("model endpoint answered 503: overloaded")
        return good.replies[0](messages)

    report = await distill(toy_dir, teacher=ScriptedBackend([flaky] * 100), out_dir=tmp_path / "a", data_dir=tmp_path,
                           servers=toy_servers, options=NO_LENGTHS)
    assert report.records == 4
    assert [d["id"] for d in report.dropped] == ["q-02"]
    assert report.dropped[0]["reason"].startswith("teacher error: ")
    assert report.dropped[0]["reason"].endswith("model endpoint answered 503: overloaded")

    def down(messages: Any) -> str:
        raise ConnectionError("model endpoint unreachable (http://127.0.0.1:9/v1)")

    with pytest.raises(ConnectionError, match="the teacher failed on 5 queries in a row"):
        await distill(toy_dir, teacher=ScriptedBackend([down] * 100), out_dir=tmp_path / "b", data_dir=tmp_path,
                      servers=toy_servers, options=NO_LENGTHS)
