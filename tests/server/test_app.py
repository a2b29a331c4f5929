"""The MCP app in memory (``async with Client(create_app(service))``): every tool, both resources and the
prompt, with the HR server in process as the real downstream server and models scripted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError

from routines.backends.scripted import ScriptedBackend
from routines.model import Routine
from routines.scenario import Scenario

pytestmark = pytest.mark.anyio

def as_data(routine: Routine) -> dict[str, Any]:
    """A Routine as a client would send it: JSON, without a version."""
    return routine.model_dump(exclude_none=True, exclude={"version"})


def unbind(routine: Routine, step: str, new_id: str) -> dict[str, Any]:
    """A copy whose ``step`` has no argument bindings (the model must fill them)."""
    data = as_data(routine)
    data["id"] = new_id
    for s in data["steps"]:
        if s["step"] == step:
            s.pop("args", None)
    return data


class Progress:
    """A client progress handler that records what it was sent."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))

    @property
    def messages(self) -> list[str | None]:
        return [m for _, _, m in self.seen]


async def stored(client: Client) -> list[str]:
    result = await client.call_tool("list_routines", {})
    return [r["id"] for r in result.structured_content["result"]]


# ---- listing -------------------------------------------------------------------------------------------
async def test_publishes_tools_resources_and_prompt(make_service) -> None:
    from server.app import create_app

    async with Client(create_app(make_service())) as client:
        tools = {t.name: t for t in await client.list_tools()}
        templates = {t.uri_template for t in await client.list_resource_templates()}
        prompts = {p.name: p for p in await client.list_prompts()}
    assert set(tools) == {"run_routine", "retrieve_routine", "plan_routine", "distill_dataset", "save_routine",
                          "get_routine", "list_routines", "delete_routine"}
    assert tools["retrieve_routine"].annotations.readOnlyHint is True
    assert tools["list_routines"].annotations.readOnlyHint is True
    assert tools["delete_routine"].annotations.destructiveHint is True
    assert tools["run_routine"].annotations.readOnlyHint is False
    assert set(tools["run_routine"].output_schema["properties"]) >= {"answer", "steps", "routine_id", "run_id"}
    assert "InputRequiredResult" not in json.dumps(tools["run_routine"].output_schema)
    assert templates == {"routine://{routine_id}", "routine://{routine_id}/text"}
    assert [a.name for a in prompts["plan_routine"].arguments] == ["draft", "tools"]


# ---- Routines: save, get, list, resources, delete ------------------------------------------------------
async def test_save_get_list_resources_delete(make_service, hr_routines) -> None:
    from server.app import create_app

    salary = hr_routines["hr.salary"]
    async with Client(create_app(make_service())) as client:
        saved = (await client.call_tool("save_routine", {"routine": as_data(salary)})).structured_content
        assert (saved["id"], saved["version"]) == ("hr.salary", 1)
        assert saved["text"].startswith("Step 1. Get requester:") and "and end the workflow;" in saved["text"]
        again = (await client.call_tool("save_routine", {"routine": as_data(salary)})).structured_content
        assert again["version"] == 1  # unchanged content is not a new version
        changed = as_data(salary) | {"description": salary.description + " Also pay."}
        assert (await client.call_tool("save_routine", {"routine": changed})).structured_content["version"] == 2

        got = (await client.call_tool("get_routine", {"routine_id": "hr.salary"})).structured_content
        first = (await client.call_tool("get_routine", {"routine_id": "hr.salary", "version": 1})).structured_content
        assert got["version"] == 2 and first["routine"]["description"] == salary.description
        listed = (await client.call_tool("list_routines", {})).structured_content["result"]
        assert listed == [{"id": "hr.salary", "name": "Salary enquiry", "version": 2, "description": changed["description"]}]

        as_json = await client.read_resource("routine://hr.salary")
        as_text = await client.read_resource("routine://hr.salary/text")
        assert as_json[0].mime_type == "application/json" and json.loads(as_json[0].text) == got["routine"]
        assert as_text[0].mime_type == "text/plain" and as_text[0].text == got["text"]

        deleted = (await client.call_tool("delete_routine", {"routine_id": "hr.salary"})).structured_content
        assert deleted == {"deleted": "hr.salary", "versions": 2}
        assert await stored(client) == []
        with pytest.raises(ToolError, match="no Routine 'hr.salary'; the store is empty"):
            await client.call_tool("get_routine", {"routine_id": "hr.salary"})
        with pytest.raises(ToolError, match="no Routine 'hr.salary'"):
            await client.call_tool("delete_routine", {"routine_id": "hr.salary"})
        with pytest.raises(MCPError, match="no Routine 'hr.salary'"):
            await client.read_resource("routine://hr.salary")


async def test_save_refuses_unknown_tool_naming_the_step(make_service, hr_routines) -> None:
    from server.app import create_app

    bad = as_data(hr_routines["hr.salary"])
    bad["steps"][1]["tool"] = "lookup_employee"
    async with Client(create_app(make_service())) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("save_routine", {"routine": bad})
        assert await stored(client) == []
    message = str(caught.value)
    assert "was not saved" in message and "step 2" in message and "lookup_employee" in message


# ---- running -------------------------------------------------------------------------------------------
async def test_run_bound_reports_each_step(make_service, hr_routines, people) -> None:
    from server.app import create_app

    progress = Progress()
    service = make_service()
    async with Client(create_app(service), progress_handler=progress) as client:
        await client.call_tool("save_routine", {"routine": as_data(hr_routines["hr.salary"])})
        out = (await client.call_tool("run_routine", {
            "query": f"What does {people.employee_name} earn?", "routine_id": "hr.salary", "mode": "bound",
            "inputs": {"employee_name": people.employee_name, "department": people.department},
            "user_id": people.hr_user,
        })).structured_content
    assert out["status"] == "finished" and out["routine_id"] == "hr.salary" and out["routine_version"] == 1
    assert [(s["step"], s["tool"], s["source"]) for s in out["steps"]] == [
        ("1", "get_user_profile", "bound"), ("2", "search_employee", "bound"), ("3", "check_permission", "bound"),
        ("4-1_1", "get_salary", "bound"), ("4-1_2", "get_salary_band", "bound"), ("4-1_3", "summarize", "bound"),
    ]
    assert people.employee_name in out["answer"] and "EUR" in out["answer"]
    assert out["steps"][1]["arguments"] == {"name": people.employee_name, "department": people.department}
    assert progress.seen == [(float(i), None, f"step {s['step']}: {s['tool']}") for i, s in enumerate(out["steps"], 1)]
    assert service.runlog.get_run(out["run_id"])["status"] == "finished"


async def test_run_hybrid_asks_the_model_only_for_the_open_step(make_service, hr_routines, people) -> None:
    from server.app import create_app

    model = ScriptedBackend([{"name": "search_employee",
                              "arguments": {"name": people.employee_name, "department": people.department}}])
    progress = Progress()
    async with Client(create_app(make_service(executor=model)), progress_handler=progress) as client:
        await client.call_tool("save_routine", {"routine": unbind(hr_routines["hr.salary"], "2", "test.salary")})
        out = (await client.call_tool("run_routine", {
            "query": f"What does {people.employee_name} in {people.department} earn?", "routine_id": "test.salary",
            "mode": "hybrid", "inputs": {"employee_name": people.employee_name, "department": people.department},
            "user_id": people.staff_user,
        })).structured_content
    assert len(model.requests) == 1  # one model call, for step 2 only
    assert [(s["step"], s["source"]) for s in out["steps"]] == [
        ("1", "bound"), ("2", "model"), ("3", "bound"), ("4-2_1", "bound"), ("4-2_2", "bound")]
    assert "may not see" in out["answer"] and out["retries"] == 0
    assert len(progress.seen) == 5 and progress.messages[1] == "step 2: search_employee"


async def test_run_model_mode_retries_a_bad_reply(make_service, hr_routines, people) -> None:
    from server.app import create_app

    model = ScriptedBackend([
        {"name": "get_user_profile", "arguments": {"user_id": people.staff_user}},
        "I would search for the employee next.",  # no call: refused, fed back, retried
        {"name": "search_employee", "arguments": {"name": people.employee_name, "department": people.department}},
        {"name": "check_permission", "arguments": {"user_id": people.staff_user, "action": "view_salary",
                                                   "employee_id": people.employee_id}},
        {"name": "get_salary_band", "arguments": {"employee_id": people.employee_id}},
        {"name": "summarize", "arguments": {"template": "salary_band", "data": {"employee": people.employee_name}}},
    ])
    progress = Progress()
    async with Client(create_app(make_service(executor=model)), progress_handler=progress) as client:
        await client.call_tool("save_routine", {"routine": as_data(hr_routines["hr.salary"])})
        out = (await client.call_tool("run_routine", {
            "query": f"What does {people.employee_name} earn?", "routine_id": "hr.salary", "mode": "model",
            "user_id": people.staff_user, "inputs": {"employee_name": people.employee_name, "department": people.department},
        })).structured_content
    assert [s["tool"] for s in out["steps"]] == ["get_user_profile", "search_employee", "check_permission",
                                                 "get_salary_band", "summarize"]
    assert {s["source"] for s in out["steps"]} == {"model"} and out["retries"] == 1
    values = [p for p, _, _ in progress.seen]
    assert values == sorted(values) and len(set(values)) == len(values)  # progress only ever increases
    assert [m for m in progress.messages if "retried" not in m] == [
        f"step {s['step']}: {s['tool']}" for s in out["steps"]]
    assert sum("retried" in m for m in progress.messages) == 1


async def test_run_model_mode_without_a_model_is_a_clear_error(make_service, hr_routines) -> None:
    from server.app import create_app

    service = make_service()
    async with Client(create_app(service)) as client:
        await client.call_tool("save_routine", {"routine": as_data(hr_routines["hr.salary"])})
        with pytest.raises(ToolError, match="needs an executor model.*use mode 'bound'"):
            await client.call_tool("run_routine", {"query": "salary of Ada", "routine_id": "hr.salary",
                                                   "mode": "model"})
    assert service.runlog.list_runs() == []


async def test_failed_run_names_the_steps_done(make_service, hr_routines, people) -> None:
    from server.app import create_app

    async with Client(create_app(make_service())) as client:
        await client.call_tool("save_routine", {"routine": as_data(hr_routines["hr.salary"])})
        with pytest.raises(ToolError) as caught:
            await client.call_tool("run_routine", {
                "query": "What does Nobody Atall earn?", "routine_id": "hr.salary", "mode": "bound",
                "inputs": {"employee_name": "Nobody Atall", "department": people.department},
                "user_id": people.hr_user})
    message = str(caught.value)
    assert "failed" in message and "search_employee" in message and "no employee named 'Nobody Atall'" in message
    assert "steps done: 1 get_user_profile" in message


# ---- retrieval -----------------------------------------------------------------------------------------
async def test_retrieve_picks_a_routine_or_abstains(make_service, hr_routines, people) -> None:
    from server.app import create_app

    async with Client(create_app(make_service())) as client:
        for routine in hr_routines.values():
            await client.call_tool("save_routine", {"routine": as_data(routine)})
        found = (await client.call_tool("retrieve_routine", {
            "query": "how much does an employee earn: salary, pay and bonus target", "k": 3})).structured_content
        assert found["abstained"] is False and found["routine"]["id"] == "hr.salary"
        assert found["candidates"][0]["routine_id"] == "hr.salary" and len(found["candidates"]) == 3
        assert found["routine"]["text"].startswith("Step 1.")

        none = (await client.call_tool("retrieve_routine", {"query": "zebra quantum xylophone"})).structured_content
        assert none["abstained"] is True and none["routine"] is None and len(none["candidates"]) == 3
        assert "name one explicitly" in none["explanation"]
        with pytest.raises(ToolError, match="no Routine matches well enough .*name one explicitly"):
            await client.call_tool("run_routine", {"query": "zebra quantum xylophone", "mode": "bound"})

        out = (await client.call_tool("run_routine", {
            "query": "how much does an employee earn: salary, pay and bonus target", "mode": "bound", "user_id": people.hr_user,
            "inputs": {"employee_name": people.employee_name, "department": people.department},
        })).structured_content
    assert out["routine_id"] == "hr.salary" and out["retrieval_score"] == pytest.approx(found["score"])


@pytest.fixture(scope="module")
def minilm() -> Any:
    from memory.embeddings import Embedder

    return Embedder()  # loads on first use, once for this module


async def retrieve_real(tmp_path: Path, hr_db: Path, routines: dict[str, Routine], embedder: Any,
                        queries: list[str]) -> list[dict[str, Any]]:
    from routines.hub import ToolHub
    from scenarios.hr.server import create_server
    from server.app import create_app
    from server.service import RoutineService
    from server.settings import Settings

    service = RoutineService(Settings(data_dir=tmp_path, executor_backend="none"),
                             hub=ToolHub({"hr": create_server(hr_db)}), embedder=embedder)
    try:
        async with Client(create_app(service)) as client:
            for routine in routines.values():
                await client.call_tool("save_routine", {"routine": as_data(routine)})
            return [(await client.call_tool("retrieve_routine", {"query": q, "k": 3})).structured_content
                    for q in queries]
    finally:
        await service.aclose()


@pytest.mark.model
async def test_real_embedder_ranks_the_right_routine_first(tmp_path, hr_db, hr_routines, people, minilm) -> None:
    """Retrieval quality needs the real MiniLM: paraphrases with no shared keyword rank the right Routine
    first, and an unrelated request abstains."""
    salary, leave, flight = await retrieve_real(tmp_path, hr_db, hr_routines, minilm, [
        f"How much money does {people.employee_name} make?",
        f"How many vacation days does {people.employee_name} have left?",
        "What's the weather in Paris tomorrow?",  # clearly off-topic: below the 0.13 threshold
    ])
    assert salary["candidates"][0]["routine_id"] == "hr.salary"
    assert leave["candidates"][0]["routine_id"] == "hr.leave"
    assert flight["abstained"] is True and flight["routine"] is None


@pytest.mark.model
async def test_real_embedder_answers_a_plain_salary_question(tmp_path, hr_db, hr_routines, people, minilm) -> None:
    (found,) = await retrieve_real(tmp_path, hr_db, hr_routines, minilm,
                                   [f"What is the salary of {people.employee_name}?"])
    assert found["abstained"] is False and found["routine"]["id"] == "hr.salary"


# ---- planning ------------------------------------------------------------------------------------------
def planned(routine: Routine) -> str:
    """A planner model's answer: the Routine's steps as JSON, without bindings."""
    steps = [{k: v for k, v in s.items() if k not in ("args", "when")}
             for s in routine.model_dump(exclude_none=True)["steps"]]
    return json.dumps({"name": "Salary question", "description": routine.description, "steps": steps})


async def test_plan_routine_with_a_scripted_planner(make_service, hr_routines) -> None:
    from server.app import create_app

    salary = hr_routines["hr.salary"]
    draft = Scenario.load("hr").draft("hr.salary")
    assert draft
    planner = ScriptedBackend([planned(salary), planned(salary)])
    async with Client(create_app(make_service(planner=planner))) as client:
        dry = (await client.call_tool("plan_routine", {"draft": draft})).structured_content
        assert dry["ok"] is True and dry["saved"] is None and dry["attempts"] == 1
        assert [s["tool"] for s in dry["routine"]["steps"] if "tool" in s] == [
            s.tool for s in salary.steps if s.tool]
        assert dry["text"].startswith("Step 1. Get requester:")
        assert await stored(client) == []
        out = (await client.call_tool("plan_routine", {"draft": draft, "save": True})).structured_content
        assert out["ok"] is True and out["saved"]["version"] == 1
        assert await stored(client) == [out["saved"]["id"]]
    assert "<tools>" in planner.requests[0][0].content and "get_salary_band" in planner.requests[0][0].content


async def test_plan_that_never_validates_is_reported_and_not_saved(make_service, hr_routines) -> None:
    from server.app import create_app

    bad = json.loads(planned(hr_routines["hr.salary"]))
    bad["steps"][1]["tool"] = "find_person"
    planner = ScriptedBackend([json.dumps(bad)] * 3)
    async with Client(create_app(make_service(planner=planner))) as client:
        out = (await client.call_tool("plan_routine", {"draft": "Find the person, then their salary.",
                                                       "save": True})).structured_content
        assert await stored(client) == []
    assert out["ok"] is False and out["saved"] is None and out["attempts"] == 3
    assert any(f["severity"] == "error" and f["step"] == "2" and "find_person" in f["message"]
               for f in out["findings"])


async def test_plan_with_given_tools(make_service) -> None:
    from server.app import create_app

    tools = [{"name": "lookup", "description": "Look a word up", "inputSchema": {
        "type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}},
        {"name": "answer", "description": "Answer", "inputSchema": {"type": "object", "properties": {}}}]
    reply = json.dumps({"name": "Word", "description": "Look a word up.", "steps": [
        {"step": "1", "name": "Look up", "description": "Look the word up", "tool": "lookup", "type": "node"},
        {"step": "2", "name": "Answer", "description": "Answer", "tool": "answer", "type": "finish"}]})
    async with Client(create_app(make_service(planner=ScriptedBackend([reply])))) as client:
        out = (await client.call_tool("plan_routine", {"draft": "look it up, answer", "tools": tools,
                                                       "save": True})).structured_content
    assert out["ok"] is True and out["saved"]["id"] == "word"


# ---- the planning prompt -------------------------------------------------------------------------------
async def test_planning_prompt(make_service) -> None:
    from server.app import create_app

    async with Client(create_app(make_service())) as client:
        downstream = await client.get_prompt("plan_routine", {"draft": "Look the employee up, then answer."})
        given = await client.get_prompt("plan_routine", {
            "draft": "Look it up.", "tools": json.dumps([{"name": "lookup", "inputSchema": {"type": "object"}}])})
        with pytest.raises(MCPError, match="tools is not valid JSON"):
            await client.get_prompt("plan_routine", {"draft": "x", "tools": "[oops"})
        with pytest.raises(MCPError, match=r"tools\[0\] is not a tool"):
            await client.get_prompt("plan_routine", {"draft": "x", "tools": '[{"title": "no name"}]'})
    text = downstream.messages[0].content.text
    listed = text.split("<tools>")[1].split("</tools>")[0]
    assert "Look the employee up, then answer." in text
    assert '"name": "search_employee"' in listed and '"name": "summarize"' in listed
    other = given.messages[0].content.text.split("<tools>")[1].split("</tools>")[0]
    assert '"name": "lookup"' in other and "search_employee" not in other


# ---- distillation --------------------------------------------------------------------------------------
async def test_distill_dataset_small(make_service, tmp_path, hr_db) -> None:
    """Distils the first HR training queries with the bound teacher through the scenario's own stdio server."""
    from server.app import create_app

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(hr_db, data_dir / "hr.sqlite")  # where the scenario's server config looks for it
    progress = Progress()
    async with Client(create_app(make_service(data_dir)), progress_handler=progress) as client:
        out = (await client.call_tool("distill_dataset", {"scenario": "hr", "split": "train", "limit": 2},
                                      timeout=120)).structured_content
    assert out["kept"] == 2 and out["dropped"] == []
    assert Path(out["out_path"]).parent == data_dir / "datasets" / "hr-train"
    records = [json.loads(line) for line in Path(out["out_path"]).read_text().splitlines()]
    queries = Scenario.load("hr").queries("train")[:2]
    assert [r["conversations"][0]["value"] for r in records] == [q["query"] for q in queries]
    finish = [json.loads(r["conversations"][-1]["value"])["name"] for r in records]
    assert finish == ["summarize", "summarize"]  # each record ends with its Routine's finish call
    assert json.loads(Path(out["dataset_info_path"]).read_text())
    assert [(p, t) for p, t, _ in progress.seen] == [(1.0, 2.0), (2.0, 2.0)]


# ---- bad input: a clear error, nothing stored ----------------------------------------------------------
BAD_CALLS = [
    ("run_routine", {"query": ""}, "(?s)query.*at least 1 character"),
    ("run_routine", {"query": "salary", "mode": "fast"}, "mode"),
    ("run_routine", {"query": "salary", "routine_id": "hr.nope", "mode": "bound"}, "no Routine 'hr.nope'; stored: hr.salary"),
    ("run_routine", {"query": "salary", "routine_id": "hr.salary@x", "mode": "bound"}, "after '@' comes a version number"),
    ("run_routine", {"query": "salary", "routine_id": "hr.salary@7", "mode": "bound"}, "'hr.salary' has no version 7"),
    ("run_routine", {"query": "salary", "routine_id": "hr.salary", "mode": "bound"},
     "bound mode needs the Routine's inputs: employee_name, department; pass them as inputs"),
    ("retrieve_routine", {"query": "salary", "k": 0}, "(?s)k.*greater than or equal to 1"),
    ("plan_routine", {"draft": ""}, "(?s)draft.*at least 1 character"),
    ("plan_routine", {"draft": "do it", "tools": [{"title": "x"}]}, r"tools\[0\] is not a tool"),
    ("plan_routine", {"draft": "do it", "save": True}, "planning needs a model: set ROUTINE_PLANNER_MODEL"),
    ("distill_dataset", {"scenario": "nope"}, "no scenario 'nope'; available: .*hr"),
    ("distill_dataset", {"teacher": "gpt"}, "teacher"),
    ("distill_dataset", {"teacher": "executor"}, "teacher 'executor' needs an executor model"),
    ("distill_dataset", {"teacher": "openai"}, "teacher 'openai' needs a model"),
    ("distill_dataset", {"limit": 0}, "(?s)limit.*greater than or equal to 1"),
    ("save_routine", {"routine": {}}, "neither an id nor a name"),
    ("save_routine", {"routine": {"id": "bad id!", "name": "x", "steps": [
        {"step": "1", "name": "a", "description": "b", "tool": "summarize", "type": "finish"}]}},
     "may only hold letters, digits"),
    ("save_routine", {"routine": {"name": "x", "steps": [{"step": "1", "tool": 5}]}}, "not a Routine: steps"),
    ("get_routine", {"routine_id": "hr.nope"}, "no Routine 'hr.nope'"),
    ("get_routine", {"routine_id": "hr.salary", "version": 9}, "'hr.salary' has no version 9"),
    ("delete_routine", {"routine_id": "hr.nope"}, "no Routine 'hr.nope'"),
]


@pytest.mark.parametrize(("tool", "arguments", "expected"), BAD_CALLS, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(BAD_CALLS)])
async def test_bad_input_is_a_clear_error_and_stores_nothing(
    make_service, hr_routines, tmp_path, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    from server.app import create_app

    service = make_service(planner_backend="openai")
    async with Client(create_app(service)) as client:
        await client.call_tool("save_routine", {"routine": as_data(hr_routines["hr.salary"])})
        revision = service.store.revision
        with pytest.raises(ToolError, match=expected) as caught:
            await client.call_tool(tool, arguments)
        assert await stored(client) == ["hr.salary"]
    assert "Traceback" not in str(caught.value)
    assert service.store.revision == revision  # nothing written, not even a partial version
    assert service.store.versions("hr.salary") == [1]
    assert service.runlog.list_runs() == []
    assert not (tmp_path / "data" / "datasets").exists()
