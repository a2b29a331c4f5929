"""Distilling the built-in HR scenario with the bound reference teacher (every 10th training query, all ten
flattened Routines, the server in memory over a seed-7 database)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from routines.errors import CallerError
from routines.hub import ToolHub
from routines.scenario import Scenario
from trainer.distill import DistillOptions, distill
from trainer.sharegpt import load_dataset

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def hr() -> Scenario:
    scenario = Scenario.load("hr")
    try:
        scenario.queries("train")
    except CallerError:
        pytest.skip("the HR query set is not generated yet (python -m scenarios.hr.queries --write)")
    return scenario


@pytest.fixture(scope="module")
def hr_db(hr: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scenarios.hr import build_database

    return build_database(tmp_path_factory.mktemp("hr") / "hr.sqlite", seed=7)


async def test_hr_training_queries_give_one_exact_record_each(
    hr: Scenario, hr_db: Path, tmp_path: Path, replay_run: Callable[..., Any]
) -> None:
    from scenarios.hr import create_server

    queries = hr.queries("train")[::10]
    report = await distill(hr, out_dir=tmp_path, data_dir=tmp_path, queries=queries,
                           servers={"hr": create_server(hr_db)}, options=DistillOptions(lengths=False))
    assert report.dropped == []
    assert report.records == report.gold_checked == len(queries)
    conversations = load_dataset(tmp_path)  # LLaMA-Factory's rules hold for every record
    assert [c.id for c in conversations] == [q["id"] for q in queries]
    assert all(4 <= len(c.calls) <= 7 for c in conversations)
    assert {q["variant"] for q in queries} == {q["variant"] for q in hr.queries("train")}
    routines = hr.routine_map()
    records = [json.loads(line) for line in report.out_path.read_text().splitlines()]
    for query, record in zip(queries, records):  # the Routine's tools only (the product's default), as JSON text
        assert {t["name"] for t in json.loads(record["tools"])} == set(routines[query["routine_id"]].tools())
    # finish steps pass earlier results by their keys: no call copies a result
    finish = [json.loads(t["value"]) for r in records for t in r["conversations"] if t["from"] == "function_call"
              and json.loads(t["value"])["name"] == "summarize"]
    assert len(finish) == len(records)
    for call in finish:
        data = call["arguments"]["data"]
        assert not any(isinstance(v, (dict, list)) for v in data.values()), call  # keys and short values only
        assert any(str(v).startswith("memory_") for v in data.values()), call

    # the system prompts are the executor's own: replay one record per Routine variant through it
    seen: set[str] = set()
    async with ToolHub({"hr": create_server(hr_db)}) as hub:
        for query, record, conv in zip(queries, records, conversations):
            if query["variant"] in seen:
                continue
            seen.add(query["variant"])
            requests = await replay_run(hub, routines[query["routine_id"]], query, record, conv)
            assert [r[0].content for r in requests] == [record["system"]] * len(conv.calls)
            assert all(request == conv.messages(k) for k, request in enumerate(requests))
    assert len(seen) == 10
