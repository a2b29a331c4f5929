"""``SamplingBackend``: the MCP client's own model as the executor, over both protocol paths (design 5):
``sampling/createMessage`` on legacy connections and the input-required flow on 2026-07-28 ones, with a real
in-memory MCP client whose sampling handler plays the model."""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp import Client, Context, FastMCP
from fastmcp.exceptions import ToolError

from memory.variables import VariableMemory
from routines.backends.base import Message
from routines.backends.sampling import (
    SamplingBackend,
    SamplingRequest,
    SamplingUnavailable,
    to_sampling_request,
)
from routines.backends.scripted import call_text
from routines.executor import Executor
from routines.hub import ToolHub
from routines.model import Routine
from server.input_required import InputRequiredBridge
from server.sampling import with_client_model
from tests.fixtures.toy_server import SALARY_ROUTINE, create_toy_server

pytestmark = pytest.mark.anyio

SALARY = Routine.from_file(SALARY_ROUTINE)
ADA_HR = [
    call_text("get_user_profile", {"user_id": "u-hr"}),
    call_text("search_employee", {"name": "Ada"}),
    call_text("get_salary", {"employee_id": "E-001"}),
    call_text("summarize", {"topic": "salary", "data": "memory_get_salary"}),
]


def test_tool_results_become_marked_user_turns_and_turns_alternate() -> None:
    request = to_sampling_request([
        Message("system", "Follow the Routine."),
        Message("user", "Ada?"),
        Message("assistant", ADA_HR[0]),
        Message("tool", '{"role": "hr"}'),
        Message("user", "Your reply was not accepted."),
        Message("assistant", ADA_HR[1]),
    ], max_tokens=64)
    assert request.system == "Follow the Routine." and request.max_tokens == 64
    assert request.turns == [
        ("user", "Ada?"),
        ("assistant", ADA_HR[0]),
        ("user", '<tool_response>\n{"role": "hr"}\n</tool_response>\n\nYour reply was not accepted.'),
        ("assistant", ADA_HR[1]),
    ]


async def test_the_backend_returns_what_the_sampler_answers() -> None:
    asked: list[SamplingRequest] = []

    async def sampler(request: SamplingRequest) -> str:
        asked.append(request)
        return ADA_HR[0]

    completion = await SamplingBackend(sampler).complete([Message("system", "s"), Message("user", "q")], max_tokens=9)
    assert completion.text == ADA_HR[0] and completion.backend == "sampling"
    assert completion.meta == {"constrained": False}
    assert asked == [SamplingRequest(system="s", turns=[("user", "q")], max_tokens=9)]


def test_the_unavailable_error_says_what_to_configure_instead() -> None:
    message = str(SamplingUnavailable("the client did not declare the sampling capability"))
    assert "does not offer sampling" in message and "ROUTINE_EXECUTOR_BACKEND=local or openai" in message
    assert message.endswith("(the client did not declare the sampling capability)")


def _front_server() -> FastMCP:
    """A server whose tool runs the salary Routine with the calling client's model as the executor."""
    bridge = InputRequiredBridge(timeout=20)
    front = FastMCP("front")

    @front.tool
    async def run_salary(query: str, ctx: Context) -> Any:
        async def work(backend: Any, report: Any) -> dict[str, Any]:
            async with ToolHub({"toy": create_toy_server()}) as hub:
                result = await Executor(hub, backend, variables=VariableMemory).run(
                    SALARY, query, inputs={"employee_name": "Ada"}, user_id="u-hr")
            return {"answer": result.answer, "error": result.error, "steps": [c.tool for c in result.calls]}

        return await with_client_model(ctx, bridge, "run_salary", work, needed=True)

    return front


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # create_message / the 2026-07-28 input-required flow
async def test_the_clients_model_executes_a_whole_routine(mode: str) -> None:
    replies = list(ADA_HR)
    asked: list[Any] = []

    async def model(messages: Any, params: Any, context: Any) -> str:
        asked.append((messages, params))
        return replies.pop(0)

    async with Client(_front_server(), sampling_handler=model, mode=mode) as client:
        result = await client.call_tool("run_salary", {"query": "What does Ada earn?"})
    assert result.data == {"answer": "salary: employee_id=E-001, name=Ada Lovelace, salary=98000", "error": None,
                           "steps": ["get_user_profile", "search_employee", "get_salary", "summarize"]}
    assert len(asked) == 4
    messages, params = asked[-1]
    assert "<routines>" in params.system_prompt and "- current user id: u-hr" in params.system_prompt
    assert messages[0].content.text == "What does Ada earn?"
    assert messages[-1].content.text.startswith('<tool_response>\nmemory_get_salary = {"employee_id": "E-001"')


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_client_without_sampling_gets_a_clear_error(mode: str) -> None:
    async with Client(_front_server(), mode=mode) as client:
        with pytest.raises(ToolError, match="does not offer sampling.*ROUTINE_EXECUTOR_BACKEND=local or openai"):
            await client.call_tool("run_salary", {"query": "What does Ada earn?"})
