"""``OpenAIBackend`` against a local fake of an OpenAI-compatible endpoint (``httpx2.MockTransport``): both
reply shapes, the request bodies for each constraint, the history conversion, endpoint failures, and a whole
run through the executor."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest

from memory.variables import VariableMemory
from routines.backends.base import Constraint, Message, ToolSpec
from routines.backends.openai import OpenAIBackend, to_openai_messages
from routines.backends.scripted import call_text
from routines.calls import CallParseError, parse_tool_call
from routines.executor import Executor, ExecutorConfig
from routines.hub import ToolHub
from routines.model import Routine
from tests.fixtures.toy_server import SALARY_ROUTINE, create_toy_server

pytestmark = pytest.mark.anyio

SEARCH = ToolSpec("search_employee", "Find employees.",
                  {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
SALARY = ToolSpec("get_salary", "A salary.", {"type": "object", "properties": {"employee_id": {"type": "string"}}})
MESSAGES = [Message("system", "You follow Routines."), Message("user", "What does Ada earn?")]
Reply = dict[str, Any]


def _response(content: str | None = None, tool_calls: list[tuple[str, str]] = (), usage: bool = True) -> Reply:  # type: ignore[assignment]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [{"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
                                 for i, (n, a) in enumerate(tool_calls)]
    body: Reply = {"id": "r", "object": "chat.completion", "created": 0, "model": "hr",
                   "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
    if usage:
        body["usage"] = {"prompt_tokens": 321, "completion_tokens": 17, "total_tokens": 338}
    return body


class FakeEndpoint:
    """Answers chat completions with the given replies in order and keeps every request body."""

    def __init__(self, *replies: Reply | Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.replies = list(replies)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/chat/completions"
        self.bodies.append(json.loads(request.content))
        reply = self.replies.pop(0)
        return reply(request) if callable(reply) else httpx2.Response(200, json=reply)

    def backend(self, **options: Any) -> OpenAIBackend:
        client = openai.AsyncOpenAI(base_url="http://vllm.test/v1", api_key="k", max_retries=0,
                                    http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(self)))
        return OpenAIBackend("hr-adapter", client=client, **options)


# ---- replies ---------------------------------------------------------------------------------------
async def test_a_text_tool_call_reply_is_passed_on_with_the_token_counts() -> None:
    text = "Let me search.\n" + call_text("search_employee", {"name": "Ada"})
    completion = await FakeEndpoint(_response(text)).backend().complete(MESSAGES)
    assert completion.text == text
    assert (completion.prompt_tokens, completion.output_tokens) == (321, 17)
    assert completion.backend == "openai:hr-adapter" and completion.latency_s > 0
    assert parse_tool_call(completion.text).arguments == {"name": "Ada"}


async def test_a_native_tool_call_becomes_the_same_internal_call() -> None:
    endpoint = FakeEndpoint(_response(None, [("search_employee", '{"name": "Ada"}')], usage=False))
    completion = await endpoint.backend(native_tools=True).complete(MESSAGES)
    assert completion.text == call_text("search_employee", {"name": "Ada"})
    assert completion.prompt_tokens == 0  # the endpoint reported no usage


async def test_two_native_calls_in_one_reply_are_two_calls_for_the_executor_to_refuse() -> None:
    endpoint = FakeEndpoint(_response(None, [("search_employee", '{"name": "Ada"}'), ("get_salary", "{}")]))
    completion = await endpoint.backend().complete(MESSAGES)
    with pytest.raises(CallParseError) as err:
        parse_tool_call(completion.text)
    assert err.value.kind == "multiple_calls"


async def test_native_arguments_that_are_not_json_are_a_malformed_call() -> None:
    completion = await FakeEndpoint(_response(None, [("search_employee", '{"name": "Ad')])).backend().complete(MESSAGES)
    with pytest.raises(CallParseError) as err:
        parse_tool_call(completion.text)
    assert err.value.kind == "malformed"


async def test_a_bare_structured_output_object_is_read_as_the_call() -> None:
    endpoint = FakeEndpoint(_response('  {"name": "search_employee", "arguments": {"name": "Ada"}}'))
    completion = await endpoint.backend().complete(MESSAGES, constraint=Constraint(tools=(SEARCH,)))
    assert parse_tool_call(completion.text).name == "search_employee"
    assert completion.meta["constrained"] is True


# ---- request bodies --------------------------------------------------------------------------------
async def test_the_request_names_the_adapter_and_decodes_greedily() -> None:
    endpoint = FakeEndpoint(_response("x"))
    await endpoint.backend().complete(MESSAGES, max_tokens=99)
    (body,) = endpoint.bodies
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("hr-adapter", 0.0, 99)
    assert body["messages"] == [{"role": "system", "content": "You follow Routines."},
                                {"role": "user", "content": "What does Ada earn?"}]
    assert "tools" not in body and "structured_outputs" not in body and "guided_json" not in body


async def test_structured_outputs_carries_the_schema_of_one_allowed_call_with_capped_strings() -> None:
    endpoint = FakeEndpoint(_response("{}"))
    await endpoint.backend().complete(MESSAGES, constraint=Constraint(tools=(SEARCH, SALARY), max_string_length=64))
    schema = endpoint.bodies[0]["structured_outputs"]["json"]
    first, second = schema["anyOf"]
    assert first["properties"]["name"] == {"const": "search_employee"}
    assert first["properties"]["arguments"]["properties"]["name"] == {"type": "string", "maxLength": 64}
    assert first["properties"]["arguments"]["additionalProperties"] is False
    assert second["properties"]["name"] == {"const": "get_salary"}
    assert first["required"] == ["name", "arguments"] and first["additionalProperties"] is False
    assert "tools" not in endpoint.bodies[0] and "guided_json" not in endpoint.bodies[0]


async def test_a_named_tool_choice_forces_the_one_allowed_tool() -> None:
    endpoint = FakeEndpoint(_response(None, [("search_employee", "{}")]), _response(None, [("get_salary", "{}")]))
    backend = endpoint.backend(constrain_with="tool_choice")
    await backend.complete(MESSAGES, constraint=Constraint(tools=(SEARCH,), max_string_length=32))
    await backend.complete(MESSAGES, constraint=Constraint(tools=(SEARCH, SALARY)))
    one, several = endpoint.bodies
    assert one["tool_choice"] == {"type": "function", "function": {"name": "search_employee"}}
    assert [t["function"]["name"] for t in one["tools"]] == ["search_employee"]
    assert one["tools"][0]["function"]["parameters"]["properties"]["name"]["maxLength"] == 32
    assert several["tool_choice"] == "required" and len(several["tools"]) == 2
    assert "structured_outputs" not in one


async def test_native_tools_with_structured_outputs_sends_both() -> None:
    endpoint = FakeEndpoint(_response("{}"))
    await endpoint.backend(native_tools=True).complete(MESSAGES, constraint=Constraint(tools=(SEARCH,)))
    body = endpoint.bodies[0]
    assert [t["function"]["name"] for t in body["tools"]] == ["search_employee"]
    assert body["structured_outputs"]["json"]["properties"]["name"] == {"const": "search_employee"}


async def test_a_json_schema_constraint_goes_out_as_response_format() -> None:
    schema = {"type": "object", "properties": {"employee_name": {"type": "string", "maxLength": 120}}}
    endpoint = FakeEndpoint(_response('{"employee_name": "Ada"}'))
    await endpoint.backend(extra_body={"top_k": 1}).complete(MESSAGES, constraint=Constraint(json_schema=schema))
    body = endpoint.bodies[0]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    assert body["top_k"] == 1


# ---- history conversion ----------------------------------------------------------------------------
def test_history_calls_become_native_tool_calls_answered_by_tool_messages() -> None:
    history = [
        *MESSAGES,
        Message("assistant", call_text("search_employee", {"name": "Ada"})),
        Message("tool", '{"employee_id": "E-001"}'),
        Message("assistant", "I am not sure."),
        Message("user", "Your reply was not accepted: no tool call found."),
        Message("assistant", "```json\n" + json.dumps({"name": "get_salary", "arguments": {"employee_id": "E-001"}}) + "\n```"),
        Message("tool", "error: HR only"),
        Message("tool", "an orphan observation"),
    ]
    out = to_openai_messages(history)
    assert out[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "search_employee", "arguments": '{"name": "Ada"}'}}]}
    assert out[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"employee_id": "E-001"}'}
    assert out[4] == {"role": "assistant", "content": "I am not sure."}
    assert out[5]["role"] == "user"
    assert out[6]["tool_calls"][0]["id"] == "call_2" and out[6]["tool_calls"][0]["function"]["name"] == "get_salary"
    assert out[7] == {"role": "tool", "tool_call_id": "call_2", "content": "error: HR only"}
    assert out[8] == {"role": "user", "content": "Tool result: an orphan observation"}


# ---- endpoint failures -----------------------------------------------------------------------------
async def test_an_endpoint_error_status_says_what_the_endpoint_answered() -> None:
    endpoint = FakeEndpoint(lambda request: httpx2.Response(503, json={"error": {"message": "overloaded"}}))
    with pytest.raises(ConnectionError, match="model endpoint answered 503"):
        await endpoint.backend().complete(MESSAGES)


async def test_a_prompt_too_long_for_the_endpoints_model_is_a_prompt_too_long() -> None:
    """vLLM answers 400 with "This model's maximum context length is ..."; the evaluation scores such a
    sample wrong instead of stopping (evals.runner)."""
    from routines.errors import PromptTooLong

    message = ("This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (8488 in "
               "the messages, 512 in the completion). Please reduce the length of the messages or completion.")
    endpoint = FakeEndpoint(lambda request: httpx2.Response(400, json={"error": {"message": message}}))
    with pytest.raises(PromptTooLong, match="prompt is too long: .*This model.s maximum context length") as info:
        await endpoint.backend().complete(MESSAGES)
    assert info.value.indices == (0,)


async def test_an_unreachable_endpoint_says_where_it_looked() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(ConnectionError, match=r"model endpoint unreachable \(http://vllm.test/v1/\)"):
        await FakeEndpoint(refuse).backend().complete(MESSAGES)


# ---- a whole run ---------------------------------------------------------------------------------------
@pytest.fixture
async def hub() -> AsyncIterator[ToolHub]:
    async with ToolHub({"toy": create_toy_server()}) as hub:
        yield hub


async def test_a_run_with_native_calls_finishes_and_sends_the_history_as_tool_calls(hub: ToolHub) -> None:
    endpoint = FakeEndpoint(
        _response(None, [("get_user_profile", '{"user_id": "u-staff"}')]),
        _response(call_text("search_employee", {"name": "Alan"})),
        _response(None, [("get_salary_band", '{"employee_id": "E-002"}')]),
        _response(None, [("summarize", '{"topic": "band", "data": {"band": "B3"}}')]),
    )
    executor = Executor(hub, endpoint.backend(native_tools=True), ExecutorConfig(constrain="next"), variables=VariableMemory)
    result = await executor.run(Routine.from_file(SALARY_ROUTINE), "Alan's band?", inputs={"employee_name": "Alan"},
                                user_id="u-staff")
    assert result.ok, result.error
    # the Routine binds summarize's arguments: its topic and the band result by reference win over the model's
    assert result.answer == "salary: band=B3, employee_id=E-002, name=Alan Turing"
    assert result.attempts[-1].extra["model_arguments"] == {"topic": "band", "data": {"band": "B3"}}
    last = endpoint.bodies[-1]
    assert [m["role"] for m in last["messages"]] == ["system", "user"] + ["assistant", "tool"] * 3
    assert last["messages"][4]["tool_calls"][0]["function"]["name"] == "search_employee"
    assert last["messages"][7]["content"].startswith('memory_get_salary_band = {"employee_id": "E-002"')
    # each request offers the tools the Routine allows next: at the branch, the open one (a staff user: the band)
    assert [[t["function"]["name"] for t in body["tools"]] for body in endpoint.bodies] == [
        ["get_user_profile"], ["search_employee"], ["get_salary_band"], ["summarize"]]
    assert all(s.prompt_tokens == 321 for s in result.attempts)


async def test_a_run_whose_endpoint_fails_ends_with_a_backend_error(hub: ToolHub) -> None:
    endpoint = FakeEndpoint(lambda request: httpx2.Response(500, json={"error": {"message": "boom"}}))
    executor = Executor(hub, endpoint.backend(), ExecutorConfig(), variables=VariableMemory)
    result = await executor.run(Routine.from_file(SALARY_ROUTINE), "Alan's band?", inputs={"employee_name": "Alan"},
                                user_id="u-staff")
    assert not result.ok and result.error_kind == "backend"
    assert (result.error or "").startswith("model backend: model endpoint answered 500")
