"""ProcedureStore on real SQLite files: versions, delete, import/export, restarts, all-or-nothing writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.errors import InvalidRoutineError, RoutineNotFoundError
from memory.store import MIGRATIONS, STORE_FILE, ProcedureStore
from memory.versions import RoutineVersions
from routines.model import Routine
from routines.validate import load_tools

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"


@pytest.fixture
def salary() -> Routine:
    return Routine.from_file(EXAMPLES / "salary.json")


@pytest.fixture
def store(tmp_path: Path) -> ProcedureStore:
    with ProcedureStore.open(tmp_path) as s:
        yield s


def leave(name: str, finish_tool: str = "summarize") -> dict[str, Any]:
    return {"name": name, "description": f"{name} for an employee",
            "steps": [{"step": "1", "name": "Find employee", "tool": "search_employee"},
                      {"step": "2", "name": "Answer", "tool": finish_tool, "type": "finish"}]}


def test_versions_and_latest(store: ProcedureStore, salary: Routine) -> None:
    first = store.save(salary)
    assert (first.id, first.version) == ("example.salary", 1)
    changed = salary.model_copy(update={"description": "Salary or salary band of an employee."})
    second = store.save(changed)
    assert second.version == 2
    assert store.get("example.salary").description == "Salary or salary band of an employee."
    assert store.get("example.salary", version=1).description == salary.description
    assert store.versions("example.salary") == [1, 2]
    assert [(i.id, i.version, i.steps) for i in store.list()] == [("example.salary", 2, 6)]


def test_saving_unchanged_content_adds_no_version(store: ProcedureStore, salary: Routine) -> None:
    store.save(salary)
    assert store.save(salary).version == 1
    assert store.versions("example.salary") == [1]


def test_id_is_derived_from_the_name(store: ProcedureStore) -> None:
    saved = store.save(leave("Annual Leave Balance"))
    assert saved.id == "annual-leave-balance"
    assert "annual-leave-balance" in store


def test_invalid_routine_is_refused_and_nothing_stored(store: ProcedureStore) -> None:
    revision = store.revision
    no_finish = leave("Broken")
    no_finish["steps"][1]["type"] = "node"
    with pytest.raises(InvalidRoutineError, match="no_finish"):
        store.save(no_finish)
    tools = load_tools(EXAMPLES / "tools.json")
    with pytest.raises(InvalidRoutineError, match="'lookup' is not in the tool list"):
        store.save(leave("Unknown tool", finish_tool="lookup"), tools=tools)
    with pytest.raises(InvalidRoutineError, match="neither an id nor a name"):
        store.save({"steps": leave("x")["steps"]})
    assert len(store) == 0 and store.revision == revision


def test_missing_routine_and_version(store: ProcedureStore, salary: Routine) -> None:
    with pytest.raises(RoutineNotFoundError, match="the store is empty"):
        store.get("example.salary")
    store.save(salary)
    with pytest.raises(RoutineNotFoundError, match="has no version 7"):
        store.get("example.salary", version=7)
    with pytest.raises(RoutineNotFoundError, match="stored: example.salary"):
        store.delete("nope")


def test_delete_removes_all_versions_and_embeddings(store: ProcedureStore, salary: Routine) -> None:
    store.save(salary)
    store.save(salary.model_copy(update={"name": "Salary"}))
    store.save(leave("Leave"))
    store.put_embeddings("m", "r", [("example.salary", 2, "h", np.ones(4, dtype=np.float32))])
    assert store.delete("example.salary") == 2
    assert store.ids() == ["leave"]
    assert store.db.execute("select count(*) from routine_versions where routine_id = 'example.salary'").fetchone()[0] == 0
    assert store.db.execute("select count(*) from embeddings").fetchone()[0] == 0
    with pytest.raises(RoutineNotFoundError):
        store.get("example.salary", version=1)


def test_export_import_round_trip(tmp_path: Path, store: ProcedureStore, salary: Routine) -> None:
    store.save(salary)
    store.save(leave("Leave"))
    store.save(leave("Leave") | {"description": "Days of leave left"})
    paths = store.export_dir(tmp_path / "out")
    assert sorted(p.name for p in paths) == ["example.salary.json", "leave.json"]
    with ProcedureStore(tmp_path / "other.sqlite") as other:
        imported = other.import_dir(tmp_path / "out")
        assert [r.id for r in imported] == ["example.salary", "leave"]
        for rid in ("example.salary", "leave"):
            mine = store.get(rid).model_dump(exclude={"version"})
            assert other.get(rid).model_dump(exclude={"version"}) == mine
        assert other.get("leave").description == "Days of leave left"


def test_import_takes_ids_from_file_names_for_paper_lists(tmp_path: Path, store: ProcedureStore) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hr.leave.json").write_text(json.dumps(leave("x")["steps"]))
    [saved] = store.import_dir(tmp_path / "in")
    assert saved.id == "hr.leave" and len(saved.steps) == 2


def test_import_is_all_or_nothing(tmp_path: Path, store: ProcedureStore) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(leave("A")))
    broken = leave("B")
    broken["steps"][0]["step"] = "one"
    (folder / "b.json").write_text(json.dumps(broken))
    with pytest.raises(InvalidRoutineError, match=r"b\.json"):
        store.import_dir(folder)
    (folder / "b.json").write_text("{not json")
    with pytest.raises(InvalidRoutineError, match="not valid JSON"):
        store.import_dir(folder)
    assert len(store) == 0


def test_a_failure_mid_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, salary: Routine
) -> None:
    with ProcedureStore.open(tmp_path) as store:
        real_insert = RoutineVersions.insert
        calls = []

        def crash_on_second(self: RoutineVersions, routine: Routine) -> Routine:
            calls.append(routine.id)
            if len(calls) == 2:
                raise RuntimeError("power cut")
            return real_insert(self, routine)

        monkeypatch.setattr(RoutineVersions, "insert", crash_on_second)
        with pytest.raises(RuntimeError, match="power cut"):
            store.save_many([salary, leave("Leave")])
    with ProcedureStore.open(tmp_path) as reopened:
        assert len(reopened) == 0
        assert reopened.db.execute("select count(*) from routine_versions").fetchone()[0] == 0


def test_a_restart_keeps_everything(tmp_path: Path, salary: Routine) -> None:
    with ProcedureStore.open(tmp_path) as store:
        store.save(salary)
        store.save(salary.model_copy(update={"name": "Salary"}))
        store.put_embeddings("m", "r", [("example.salary", 2, "h", np.arange(3, dtype=np.float32))])
    assert (tmp_path / STORE_FILE).exists()
    with ProcedureStore.open(tmp_path) as store:
        assert store.versions("example.salary") == [1, 2]
        assert store.get("example.salary").name == "Salary"
        ids, matrix = store.embedding_matrix("m", "r")
        assert ids == ["example.salary"] and matrix.tolist() == [[0.0, 1.0, 2.0]]
        applied = [r["name"] for r in store.db["_migrations"].rows]
        assert applied == [m.__name__ for m in MIGRATIONS]
