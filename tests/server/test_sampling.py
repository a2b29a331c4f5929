"""The client's own model as executor and planner (design section 5): the MCP 2026-07-28 input-required flow,
the older ``create_message`` flow, and a clear error when the client offers neither. The client is a real
fastmcp ``Client`` whose ``sampling_handler`` answers from a script; the HR server is the downstream server."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, CreateMessageResult, ElicitResult, InputRequiredResult, TextContent

from routines.backends.sampling import SamplingRequest
from routines.backends.scripted import call_text
from routines.model import Routine
from server.app import create_app
from server.input_required import create_message_request, response_text

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


class ClientModel:
    """A client's sampling handler that answers from a script and records what it was asked."""

    def __init__(self, replies: list[str | dict[str, Any]]) -> None:
        self.replies = list(replies)
        self.asked: list[Any] = []

    async def __call__(self, messages: list[Any], params: Any, context: Any) -> str:
        self.asked.append(params)
        reply = self.replies.pop(0)
        return call_text(reply["name"], reply["arguments"]) if isinstance(reply, dict) else reply


def salary_calls(people: Any) -> list[dict[str, Any]]:
    """The five calls of the salary Routine for an ordinary employee asking about someone else."""
    return [
        {"name": "get_user_profile", "arguments": {"user_id": people.staff_user}},
        {"name": "search_employee", "arguments": {"name": people.employee_name, "department": people.department}},
        {"name": "check_permission", "arguments": {"user_id": people.staff_user, "action": "view_salary",
                                                   "employee_id": people.employee_id}},
        {"name": "get_salary_band", "arguments": {"employee_id": people.employee_id}},
        {"name": "summarize", "arguments": {"template": "salary_band", "data": {"employee": people.employee_name}}},
    ]


def as_data(routine: Routine) -> dict[str, Any]:
    return routine.model_dump(exclude_none=True, exclude={"version"})


def run_args(people: Any, mode: str = "model") -> dict[str, Any]:
    """A run of the salary Routine; a model-mode run is given its inputs, so the client's model is asked for
    the calls only (extraction is tested in tests/routines/test_executor.py)."""
    args = {"query": f"What does {people.employee_name} earn?", "routine_id": "hr.salary", "mode": mode,
            "user_id": people.staff_user}
    if mode == "model":
        args["inputs"] = {"employee_name": people.employee_name, "department": people.department}
    return args


async def save_salary(client: Client, hr_routines: dict[str, Routine]) -> None:
    await client.call_tool("save_routine", {"routine": as_data(hr_routines["hr.salary"])})


# ---- the executor on the client's model ----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_run_routine_on_the_clients_model(make_service, hr_routines, people, mode: str) -> None:
    model = ClientModel(salary_calls(people))
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    app = create_app(make_service(executor_backend="sampling"))
    async with Client(app, mode=mode, sampling_handler=model, progress_handler=on_progress) as client:
        assert (client.protocol_version == MODERN) is (mode == "auto")
        await save_salary(client, hr_routines)
        out = (await client.call_tool("run_routine", run_args(people))).structured_content
        assert len(app.bridge) == 0  # nothing left waiting
    assert [s["tool"] for s in out["steps"]] == [c["name"] for c in salary_calls(people)]
    assert {s["source"] for s in out["steps"]} == {"model"} and people.employee_name in out["answer"]
    assert len(model.asked) == 5 and model.replies == []
    first = model.asked[0]
    assert "Step 1. Get requester" in first.system_prompt and first.temperature == 0.0
    assert first.messages[0].role == "user" and people.employee_name in first.messages[0].content.text
    later = model.asked[2]  # the earlier calls and their results travel as turns
    assert [m.role for m in later.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert "<tool_response>" in later.messages[2].content.text
    assert progress == [(float(i), f"step {s['step']}: {s['tool']}") for i, s in enumerate(out["steps"], 1)]


async def test_hybrid_run_asks_the_clients_model_only_for_open_steps(make_service, hr_routines, people) -> None:
    open_step = as_data(hr_routines["hr.salary"]) | {"id": "test.salary"}
    del open_step["steps"][1]["args"]
    model = ClientModel([salary_calls(people)[1]])
    app = create_app(make_service(executor_backend="sampling"))
    async with Client(app, sampling_handler=model) as client:
        await client.call_tool("save_routine", {"routine": open_step})
        out = (await client.call_tool("run_routine", run_args(people, "hybrid") | {
            "routine_id": "test.salary", "inputs": {"employee_name": people.employee_name,
                                                    "department": people.department}})).structured_content
    assert [s["source"] for s in out["steps"]] == ["bound", "model", "bound", "bound", "bound"]
    assert len(model.asked) == 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_without_sampling_gets_a_clear_error(make_service, hr_routines, people, mode: str) -> None:
    service = make_service(executor_backend="sampling")
    async with Client(create_app(service), mode=mode) as client:
        await save_salary(client, hr_routines)
        with pytest.raises(ToolError) as caught:
            await client.call_tool("run_routine", run_args(people))
        # bound runs need no model, so they still work
        bound = await client.call_tool("run_routine", run_args(people, "bound") | {
            "inputs": {"employee_name": people.employee_name, "department": people.department}})
    message = str(caught.value)
    assert "does not offer sampling" in message and "did not declare the sampling capability" in message
    assert "ROUTINE_EXECUTOR_BACKEND=local or openai" in message
    assert bound.structured_content["status"] == "finished"
    assert [r["mode"] for r in service.runlog.list_runs()] == ["bound"]


async def test_a_model_that_keeps_failing_ends_the_run_cleanly(make_service, hr_routines, people) -> None:
    model = ClientModel(["no idea"] * 3)
    app = create_app(make_service(executor_backend="sampling"))
    async with Client(app, sampling_handler=model) as client:
        await save_salary(client, hr_routines)
        with pytest.raises(ToolError, match="no acceptable call after 3 tries"):
            await client.call_tool("run_routine", run_args(people))
        assert len(app.bridge) == 0
    assert len(model.asked) == 3


# ---- the planner on the client's model -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_plan_routine_on_the_clients_model(make_service, hr_routines, mode: str) -> None:
    salary = hr_routines["hr.salary"]
    steps = [{k: v for k, v in s.items() if k not in ("args", "when")}
             for s in salary.model_dump(exclude_none=True)["steps"]]
    model = ClientModel([json.dumps({"name": "Salary question", "description": "Salaries.", "steps": steps})])
    app = create_app(make_service(planner_backend="sampling"))
    async with Client(app, mode=mode, sampling_handler=model) as client:
        out = (await client.call_tool("plan_routine", {"draft": "Who asks, find the employee, check, answer.",
                                                       "save": True})).structured_content
        listed = (await client.call_tool("list_routines", {})).structured_content["result"]
    assert out["ok"] is True and out["saved"]["id"] == "salary-question"
    assert [r["id"] for r in listed] == ["salary-question"]
    assert "<tools>" in model.asked[0].messages[0].content.text


# ---- the input-required flow by hand -------------------------------------------------------------------
def answer(text: str) -> CreateMessageResult:
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text=text), model="scripted")


async def call(client: Client, arguments: dict[str, Any], **more: Any) -> CallToolResult | InputRequiredResult:
    return await client.session.call_tool("run_routine", arguments, allow_input_required=True, **more)


async def test_input_required_round_trips_by_hand(make_service, hr_routines, people) -> None:
    app = create_app(make_service(executor_backend="sampling"))
    calls = salary_calls(people)
    async with Client(app, sampling_handler=ClientModel([])) as client:
        await save_salary(client, hr_routines)
        args = run_args(people)
        first = await call(client, args)
        assert isinstance(first, InputRequiredResult) and list(first.input_requests) == ["sample-1"]
        request = first.input_requests["sample-1"]
        assert request.method == "sampling/createMessage" and request.params.max_tokens > 0
        # a retry that carries no answer is asked the same question again
        again = await call(client, args, request_state=first.request_state)
        assert isinstance(again, InputRequiredResult) and list(again.input_requests) == ["sample-1"]
        state, key, rounds = again.request_state, "sample-1", 1
        result: Any = again
        for reply in calls:
            result = await call(client, args, request_state=state,
                                input_responses={key: answer(call_text(reply["name"], reply["arguments"]))})
            rounds += 1
            if isinstance(result, InputRequiredResult):
                state, (key,) = result.request_state, list(result.input_requests)
        assert isinstance(result, CallToolResult) and not result.is_error
        assert result.structured_content["status"] == "finished" and rounds == 6 and key == "sample-5"
        # the run is gone: its state cannot be replayed
        replay = await call(client, args, request_state=state, input_responses={key: answer("x")})
        assert isinstance(replay, CallToolResult) and replay.is_error
        assert "no longer has" in replay.content[0].text
        assert len(app.bridge) == 0


async def test_a_wrong_kind_of_answer_is_refused(make_service, hr_routines, people) -> None:
    app = create_app(make_service(executor_backend="sampling"))
    async with Client(app, sampling_handler=ClientModel([])) as client:
        await save_salary(client, hr_routines)
        first = await call(client, run_args(people))
        wrong = await call(client, run_args(people), request_state=first.request_state,
                           input_responses={"sample-1": ElicitResult(action="decline")})
    assert isinstance(wrong, CallToolResult) and wrong.is_error
    assert "not a sampling result" in wrong.content[0].text


async def test_an_abandoned_run_expires(make_service, hr_routines, people) -> None:
    service = make_service(executor_backend="sampling", sampling_timeout=0.2)
    app = create_app(service)
    async with Client(app, sampling_handler=ClientModel([])) as client:
        await save_salary(client, hr_routines)
        first = await call(client, run_args(people))
        assert isinstance(first, InputRequiredResult) and len(app.bridge) == 1
        with anyio.fail_after(5):
            while len(app.bridge):
                await anyio.sleep(0.05)
        late = await call(client, run_args(people), request_state=first.request_state,
                          input_responses={"sample-1": answer("too late")})
    assert isinstance(late, CallToolResult) and late.is_error
    assert "no longer has" in late.content[0].text and "call run_routine again" in late.content[0].text
    (run,) = service.runlog.list_runs()
    assert run["status"] == "failed" and "did not answer the model request within 0.2 s" in run["error"]


async def test_a_legacy_client_that_never_answers_fails_the_run(make_service, hr_routines, people) -> None:
    async def silent(messages: Any, params: Any, context: Any) -> str:
        await anyio.sleep(30)
        return "too late"

    service = make_service(executor_backend="sampling", sampling_timeout=0.2)
    async with Client(create_app(service), mode="legacy", sampling_handler=silent) as client:
        await save_salary(client, hr_routines)
        with pytest.raises(ToolError, match="did not answer the model request within 0.2 s"):
            await client.call_tool("run_routine", run_args(people))
    (run,) = service.runlog.list_runs()
    assert run["status"] == "failed"


async def test_closing_the_server_cancels_waiting_runs(make_service, hr_routines, people) -> None:
    app = create_app(make_service(executor_backend="sampling"))
    async with Client(app, sampling_handler=ClientModel([])) as client:
        await save_salary(client, hr_routines)
        assert isinstance(await call(client, run_args(people)), InputRequiredResult)
        assert len(app.bridge) == 1
    assert len(app.bridge) == 0


async def test_state_of_one_tool_does_not_resume_another(make_service, hr_routines, people) -> None:
    app = create_app(make_service(executor_backend="sampling", planner_backend="sampling"))
    async with Client(app, sampling_handler=ClientModel([])) as client:
        await save_salary(client, hr_routines)
        first = await call(client, run_args(people))
        with pytest.raises(MCPError, match="Invalid or expired requestState"):  # sealed for run_routine
            await client.session.call_tool("plan_routine", {"draft": "x"}, allow_input_required=True,
                                           request_state=first.request_state)
        with pytest.raises(MCPError, match="Invalid or expired requestState"):  # and tamper-proof
            state = first.request_state
            await call(client, run_args(people), request_state=state[:20] + ("B" if state[20] == "A" else "A") + state[21:])


# ---- conversions ---------------------------------------------------------------------------------------
def test_sampling_request_becomes_a_create_message_request() -> None:
    request = create_message_request(SamplingRequest(system="SYS", turns=[("user", "q"), ("assistant", "a"),
                                                                          ("user", "r")], max_tokens=64))
    assert request.method == "sampling/createMessage"
    params = request.params
    assert params.system_prompt == "SYS" and params.max_tokens == 64 and params.temperature == 0.0
    assert [(m.role, m.content.text) for m in params.messages] == [("user", "q"), ("assistant", "a"), ("user", "r")]


def test_response_text() -> None:
    assert response_text(answer("<tool_call>{}</tool_call>")) == "<tool_call>{}</tool_call>"
    with pytest.raises(ToolError, match="not a sampling result"):
        response_text(ElicitResult(action="cancel"))
