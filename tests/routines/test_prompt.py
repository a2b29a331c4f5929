"""The executor's system prompt and conversation: which sections appear under which options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routines.backends.base import Message
from routines.calls import ToolCall, parse_tool_call
from routines.model import Routine
from routines.prompt import (
    DEFAULT_ROLE,
    PromptOptions,
    build_messages,
    build_system_prompt,
    observation_text,
)
from routines.render import parse_routine, render_routine
from routines.trajectory import Call
from routines.validate import load_tools

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"


@pytest.fixture
def salary() -> Routine:
    return Routine.from_file(EXAMPLES / "salary.json")


@pytest.fixture
def tools() -> list:
    return load_tools(EXAMPLES / "tools.json")


def between(text: str, start: str, end: str) -> str:
    """The lines between a line ``start`` and the next line ``end``."""
    lines = text.splitlines()
    first = lines.index(start)
    return "\n".join(lines[first + 1 : lines.index(end, first + 1)])


def test_default_prompt_has_every_section_in_order(salary: Routine, tools: list) -> None:
    prompt = build_system_prompt(routines=[salary], tools=tools, system={"user_id": "u-17"})
    assert prompt.startswith(DEFAULT_ROLE)
    for section in (
        "Rules:",
        "# System parameters",
        "# Routine",
        "# Tools",
        "# Output format",
    ):
        assert prompt.count(section) == 1, section
    for tag in ("routines", "tools"):
        assert prompt.count(f"<{tag}>\n") == 1 and prompt.count(f"</{tag}>") >= 1, tag
    assert "<variables>" not in prompt  # keys are shown in the turns that create them
    assert "- current user id: u-17" in prompt
    assert between(prompt, "<routines>", "</routines>") == render_routine(salary)
    assert "Follow the Routine step by step" in prompt


def test_routine_in_the_prompt_parses_back(salary: Routine, tools: list) -> None:
    prompt = build_system_prompt(routines=[salary], tools=tools)
    parsed = parse_routine(between(prompt, "<routines>", "</routines>"))
    assert [(s.step, s.tool, s.type) for s in parsed.steps] == [
        (s.step, s.tool, s.type) for s in salary.steps
    ]


def test_tools_are_listed_as_json_signatures(salary: Routine, tools: list) -> None:
    prompt = build_system_prompt(routines=[salary], tools=tools)
    lines = between(prompt, "<tools>", "</tools>").splitlines()
    assert [json.loads(line)["name"] for line in lines] == [t.name for t in tools]
    assert json.loads(lines[0]) == {
        "name": "get_user_profile",
        "description": "The profile and role of a user account.",
        "parameters": {
            "type": "object",
            "properties": {"user_id": {"type": "string"}},
            "required": ["user_id"],
        },
    }


def test_without_routine(salary: Routine, tools: list) -> None:
    for prompt in (
        build_system_prompt(routines=[salary], tools=tools, options=PromptOptions(with_routine=False)),
        build_system_prompt(routines=[], tools=tools),
    ):
        assert "<routines>" not in prompt and "# Routine" not in prompt
        assert "get_salary_band tool" not in prompt
        assert "Follow the Routine" not in prompt
        assert "Finish by calling the summarising tool" in prompt
        assert "<tools>" in prompt and "# Output format" in prompt


def test_io_option_adds_descriptions(salary: Routine, tools: list) -> None:
    plain = build_system_prompt(routines=[salary], tools=tools)
    with_io = build_system_prompt(routines=[salary], tools=tools, options=PromptOptions(io=True))
    assert "[input: employee name from the question]" in with_io
    assert "[input:" not in plain


def test_no_tool_names_option(salary: Routine, tools: list) -> None:
    prompt = build_system_prompt(routines=[salary], tools=tools, options=PromptOptions(tool_names=False))
    routine_text = between(prompt, "<routines>", "</routines>")
    assert " tool" not in routine_text
    assert routine_text == render_routine(salary, tool_names=False)


def test_custom_role(salary: Routine, tools: list) -> None:
    prompt = build_system_prompt(
        routines=[salary], tools=tools, options=PromptOptions(role="You are HR's helper.")
    )
    assert prompt.startswith("You are HR's helper.\n")
    assert DEFAULT_ROLE not in prompt


def test_several_routines_get_headers(salary: Routine, tools: list) -> None:
    other = salary.model_copy(update={"id": "example.other", "name": "Other enquiry", "description": ""})
    text = between(build_system_prompt(routines=[salary, other], tools=tools), "<routines>", "</routines>")
    assert text.count("Routine: ") == 2
    assert "Routine: Salary enquiry - Tell an HR user" in text and "Routine: Other enquiry\n" in text
    single = between(build_system_prompt(routines=[salary], tools=tools), "<routines>", "</routines>")
    assert "Routine: " not in single


def test_routine_given_as_text_is_used_as_is(tools: list) -> None:
    text = "Step 1. Answer: Reply, use the summarize tool, and end the workflow;"
    assert between(build_system_prompt(routines=[text], tools=tools), "<routines>", "</routines>") == text


def test_system_parameters_only_when_given(salary: Routine, tools: list) -> None:
    bare = build_system_prompt(routines=[salary], tools=tools)
    assert "# System parameters" not in bare
    full = build_system_prompt(routines=[salary], tools=tools, system={"user_id": "u-17", "department_code": "HR"})
    assert full.endswith("# System parameters\n- current user id: u-17\n- department code: HR")


def test_prompt_is_deterministic(salary: Routine, tools: list) -> None:
    kwargs = {
        "routines": [salary],
        "tools": tools,
        "system": {"user_id": "u"},
    }
    assert build_system_prompt(**kwargs) == build_system_prompt(**kwargs)


def test_output_format_example_is_a_parseable_call_shape(salary: Routine, tools: list) -> None:
    prompt = build_system_prompt(routines=[salary], tools=tools)
    assert "exactly one tool call" in prompt
    shape = between(prompt, "<tool_call>", "</tool_call>")
    assert '"name"' in shape and '"arguments"' in shape


def test_messages_alternate_calls_and_observations() -> None:
    call = ToolCall("search_employee", {"name": "Ada"})
    messages = build_messages("SYSTEM", "What does Ada earn?",
                              [Call("1", call.name, call.arguments, '{"employee_id": "E-3"}')])
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[0] == Message("system", "SYSTEM")
    assert messages[1] == Message("user", "What does Ada earn?")
    assert parse_tool_call(messages[2].content) == call
    assert messages[3].content == '{"employee_id": "E-3"}'
    assert build_messages("S", "Q", []) == [Message("system", "S"), Message("user", "Q")]


def test_observation_text_shows_the_results_key_and_the_keys_it_added() -> None:
    assert observation_text("memory_t", "plain", {}) == "memory_t = plain"
    assert observation_text("memory_t", {"name": "Zoë", "n": [1, 2]}, {}) == 'memory_t = {"name": "Zoë", "n": [1, 2]}'
    assert observation_text("memory_t", None, {}) == "memory_t = null"
    line = observation_text("memory_t", {"a": {"b": True}}, {})
    assert json.loads(line.split(" = ", 1)[1]) == {"a": {"b": True}}
    team = observation_text("memory_list_team", {"members": "memory_members"}, {"memory_members": '["A", "B"... (900 characters)'})
    assert team == 'memory_list_team = {"members": "memory_members"}\nmemory_members = ["A", "B"... (900 characters)'
    # A long text result is stored whole and shown as its preview only.
    assert observation_text("memory_policy", "memory_policy", {"memory_policy": "Leave... (3,000 characters)"}) == (
        "memory_policy = Leave... (3,000 characters)")
