"""Reading exactly one tool call out of what a model wrote (design 4.2)."""

from __future__ import annotations

import json

import pytest

from routines.calls import CallParseError, ToolCall, parse_tool_call

CALL = ToolCall("get_salary", {"employee_id": "E-3"})
BODY = '{"name": "get_salary", "arguments": {"employee_id": "E-3"}}'


@pytest.mark.parametrize(
    "text",
    [
        f"<tool_call>{BODY}</tool_call>",
        f"<tool_call>\n{BODY}\n</tool_call>",
        f"I will look up the salary now.\n<tool_call>\n{BODY}\n</tool_call>\nDone.",
        f"<tool_call>{BODY}",  # the closing tag cut off
        f"<tool_call>\n```json\n{BODY}\n```\n</tool_call>",
        f"```json\n{BODY}\n```",
        f"```\n{BODY}\n```",
        BODY,
        f"Calling the tool: {BODY} - that should do it.",
        f"[{BODY}]",
        '<tool_call>{"name": "get_salary", "arguments": "{\\"employee_id\\": \\"E-3\\"}"}</tool_call>',
        '<tool_call>{"name": " get_salary ", "parameters": {"employee_id": "E-3"}}</tool_call>',
        '{"type": "function", "function": {"name": "get_salary", "arguments": "{\\"employee_id\\": \\"E-3\\"}"}}',
        f'The last result was {{"employee_id": "E-3"}}, so: <tool_call>{BODY}</tool_call>',
        f'Earlier I got {{"ok": true}}. Now {BODY}',
    ],
)
def test_one_call_in_the_shapes_models_write(text: str) -> None:
    assert parse_tool_call(text) == CALL


def test_missing_or_empty_arguments_mean_no_arguments() -> None:
    assert parse_tool_call('<tool_call>{"name": "now"}</tool_call>') == ToolCall("now", {})
    assert parse_tool_call('<tool_call>{"name": "now", "arguments": null}</tool_call>') == ToolCall("now", {})
    assert parse_tool_call('<tool_call>{"name": "now", "arguments": ""}</tool_call>') == ToolCall("now", {})


def test_braces_inside_strings_do_not_confuse_it() -> None:
    call = parse_tool_call('Sure: {"name": "note", "arguments": {"text": "use {x} and }"}} (see {y})')
    assert call == ToolCall("note", {"text": "use {x} and }"})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I have all I need; the answer is 42.",
        "<tool_call></tool_call>",
        "The employee's name is {unknown}.",
    ],
)
def test_no_call(text: str) -> None:
    with pytest.raises(CallParseError) as info:
        parse_tool_call(text)
    assert info.value.kind == "no_call"
    assert "<tool_call>" in str(info.value)  # tells the model the expected form


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>{"name": "get_salary", "arguments": {"employee_id": "E-3"}</tool_call>',  # one brace short
        '<tool_call>{"name": "get_salary", "arguments": {"name": "x"}</tool_call>',  # an inner object is no call
        "<tool_call>get_salary(employee_id='E-3')</tool_call>",
        '<tool_call>"get_salary"</tool_call>',
        "<tool_call>[]</tool_call>",
        '<tool_call>{"arguments": {}}</tool_call>',
        '<tool_call>{"name": 7, "arguments": {}}</tool_call>',
        '<tool_call>{"name": "  ", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "a", "arguments": [1, 2]}</tool_call>',
        '<tool_call>{"name": "a", "arguments": "{not json"}</tool_call>',
        '<tool_call>{"name": "a", "arguments": "[1]"}</tool_call>',
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(CallParseError) as info:
        parse_tool_call(text)
    assert info.value.kind == "malformed"
    assert str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        f"<tool_call>{BODY}</tool_call>\n<tool_call>{BODY}</tool_call>",
        f"<tool_call>{BODY}\n{BODY}</tool_call>",
        f"{BODY}\n{BODY}",
        f"{BODY}, {BODY}",
        f"First {BODY} and then {BODY}",
        f"[{BODY}, {BODY}]",
        f"```json\n{BODY}\n```\nand\n```json\n{BODY}\n```",
    ],
)
def test_two_calls_are_refused(text: str) -> None:
    with pytest.raises(CallParseError) as info:
        parse_tool_call(text)
    assert info.value.kind == "multiple_calls"
    assert "exactly one call" in str(info.value)


def test_call_round_trips_through_its_text() -> None:
    call = ToolCall("search_employee", {"name": "Zoë", "limit": 3, "filters": {"dept": ["HR"]}})
    text = call.text()
    assert text.startswith("<tool_call>") and text.endswith("</tool_call>")
    assert "Zoë" in text  # not escaped: the model sees the real characters
    assert parse_tool_call(text) == call
    assert json.loads(text[len("<tool_call>") : -len("</tool_call>")]) == call.as_dict()


def test_call_parse_error_is_a_value_error() -> None:
    assert issubclass(CallParseError, ValueError)
