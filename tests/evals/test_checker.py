"""The hierarchical checker on hand-made outputs: every error category, normalisation, the rate subsets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.checker import OneOf, Verdict, check_against, check_call, normalize_text, score
from routines.backends.base import ToolSpec
from routines.backends.scripted import call_text
from routines.calls import ToolCall

TOOLS = [
    ToolSpec(
        "search_employee",
        "Find an employee by name.",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    ),
    ToolSpec(
        "get_salary",
        "An employee's salary.",
        {
            "type": "object",
            "properties": {
                "employee_id": {"type": "integer"},
                "currency": {"type": "string", "default": "EUR"},
            },
            "required": ["employee_id"],
        },
    ),
    ToolSpec(
        "send_email",
        "Send an email.",
        {
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["to", "subject", "body"],
        },
    ),
    ToolSpec(
        "set_review",
        "Record a performance review.",
        {
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": "string"}},
                "options": {"type": "object", "properties": {"notify": {"type": "boolean"}}},
                "score": {"type": "number"},
                "manager": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["tags"],
        },
    ),
]
SALARY = ToolCall("get_salary", {"employee_id": 42})
EMAIL = ToolCall("send_email", {"to": "ana@example.com", "subject": "Your salary", "body": "Dear Ana, ..."})
REVIEW = ToolCall("set_review", {"tags": ["Remote", "Senior"], "options": {"notify": True}, "score": 0.5})


def call(tool: str, /, **arguments: Any) -> str:
    return call_text(tool, arguments)


def check(text: str, expected: ToolCall = SALARY, free_text: tuple[str, ...] = ()) -> Verdict:
    return check_call(text, expected, TOOLS, free_text)


@pytest.mark.parametrize(
    ("output", "category"),
    [
        ('<tool_call>{"name": "get_salary", "arguments": {"employee_id": 42}</tool_call>', "structural"),
        ('<tool_call>{"name": "get_salary", "arguments": {"employee_id": 42</tool_call>', "structural"),
        ('<tool_call>{"arguments": {"employee_id": 42}}</tool_call>', "structural"),
        ("Ana earns 52,000 EUR a year.", "tool.prose"),
        ("", "tool.prose"),
        (call("get_salary", employee_id=42) + call("get_salary", employee_id=43), "tool.count"),
        (
            '[{"name": "get_salary", "arguments": {}}, {"name": "search_employee", "arguments": {}}]',
            "tool.count",
        ),
        (call("search_employee", name="Ana"), "tool.wrong"),
        (call("lookup_salary", employee_id=42), "tool.invented"),
        (call("get_salary", employee_id=43), "param.value"),
        (call("get_salary", employee_id=42, department="Sales"), "param.hallucinated"),
        (call("get_salary", employee_id=42, currency="USD"), "param.hallucinated"),
        (call("get_salary"), "param.missing"),
        (call("get_salary", employee_id="forty-two"), "param.type"),
        (call("get_salary", employee_id=42.5), "param.type"),
        (call("get_salary", employee_id=True), "param.type"),
    ],
)
def test_every_error_category(output: str, category: str) -> None:
    verdict = check(output)
    assert (verdict.overall, verdict.category) == (False, category)
    assert verdict.problems and verdict.problems[0].category == category
    assert verdict.detail


def test_levels_stop_at_the_first_failure() -> None:
    broken, prose, wrong_tool, wrong_param, right = (
        check('<tool_call>{"name": "get_salary", "arguments": {</tool_call>'),
        check("I cannot help with that."),
        check(call("search_employee", name="Ana")),
        check(call("get_salary", employee_id=7)),
        check(call("get_salary", employee_id=42)),
    )
    assert (broken.structural, broken.tool, broken.parameters, broken.call) == (False, None, None, None)
    assert (prose.structural, prose.tool, prose.parameters) == (True, False, None)
    assert (wrong_tool.structural, wrong_tool.tool, wrong_tool.parameters) == (True, False, None)
    assert wrong_tool.call == ToolCall("search_employee", {"name": "Ana"})
    assert (wrong_param.structural, wrong_param.tool, wrong_param.parameters) == (True, True, False)
    assert (right.structural, right.tool, right.parameters, right.overall, right.category) == (
        True,
        True,
        True,
        True,
        None,
    )


@pytest.mark.parametrize(
    "arguments",
    [
        {"tags": ["remote", "senior"], "options": {"notify": True}, "score": 0.5},
        {"tags": ["  REMOTE ", "Senior"], "options": {"notify": True}, "score": "0.50"},
        {"tags": ["Ｒｅｍｏｔｅ", "senior"], "options": {"notify": True}, "score": 0.5},
    ],
)
def test_normalisation_accepts(arguments: dict[str, Any]) -> None:
    assert check(call_text("set_review", arguments), REVIEW).overall


@pytest.mark.parametrize(
    ("arguments", "category"),
    [
        ({"tags": ["Senior", "Remote"], "options": {"notify": True}, "score": 0.5}, "param.value"),
        ({"tags": ["Remote", "Senior"], "options": {"notify": 1}, "score": 0.5}, "param.value"),
        ({"tags": ["Remote", "Senior"], "options": {}, "score": 0.5}, "param.value"),
        ({"tags": ["Remote", "Senior"], "options": {"notify": True}, "score": "half"}, "param.type"),
        ({"tags": "Remote, Senior", "options": {"notify": True}, "score": 0.5}, "param.type"),
    ],
)
def test_normalisation_rejects(arguments: dict[str, Any], category: str) -> None:
    assert check(call_text("set_review", arguments), REVIEW).category == category


def test_numbers_compare_by_value() -> None:
    assert check(call("get_salary", employee_id=42.0)).overall
    assert check(call("get_salary", employee_id="42")).overall  # the schema says integer
    assert check(call("search_employee", name=42), ToolCall("search_employee", {"name": "42"})).category == (
        "param.type"  # but not where the schema says string
    )
    assert normalize_text("  Ａna\u00a0 Lopez ") == "ana lopez"


def test_defaults_are_neither_hallucinated_nor_missing() -> None:
    assert check(call("get_salary", employee_id=42, currency="eur")).overall
    assert check(
        call("get_salary", employee_id=42), ToolCall("get_salary", {"employee_id": 42, "currency": "EUR"})
    ).overall
    expected_usd = ToolCall("get_salary", {"employee_id": 42, "currency": "USD"})
    assert check(call("get_salary", employee_id=42), expected_usd).category == "param.missing"


def test_free_text_is_checked_for_presence_and_type_only() -> None:
    free = ("subject", "body")
    other = call("send_email", to="ana@example.com", subject="Hello", body="Something else entirely")
    assert check(other, EMAIL, free).overall
    assert check(other, EMAIL).category == "param.value"
    assert check(call("send_email", to="ana@example.com", subject="Hi", body=5), EMAIL, free).category == (
        "param.type"
    )
    assert (
        check(call("send_email", to="ana@example.com", subject="Hi"), EMAIL, free).category == "param.missing"
    )
    assert check(call("send_email", to="bob@example.com", subject="Hi", body="x"), EMAIL, free).category == (
        "param.value"
    )


def test_every_problem_is_kept_and_the_category_is_the_first_by_priority() -> None:
    verdict = check(call("send_email", to="bob@example.com", cc="x", body=3), EMAIL)
    assert verdict.category == "param.missing"
    assert sorted((p.category, p.parameter) for p in verdict.problems) == [
        ("param.hallucinated", "cc"),
        ("param.missing", "subject"),
        ("param.type", "body"),
        ("param.value", "to"),
    ]
    assert json.loads(json.dumps(verdict.as_dict()))["problems"][0]["category"]


def test_anyof_schemas_and_nulls() -> None:
    expected = ToolCall("set_review", {"tags": [], "manager": None})
    assert check(call("set_review", tags=[], manager=None), expected).overall
    assert check(call("set_review", tags=[], manager="Ana"), expected).category == "param.value"
    assert check(call("set_review", tags=[], manager=3), expected).category == "param.type"


def test_a_variable_key_equal_to_the_expected_value_passes_whatever_the_schema_says() -> None:
    expected = ToolCall("set_review", {"tags": "{{var_members}}"})
    assert check(call("set_review", tags="{{var_members}}"), expected).overall
    assert check(call("set_review", tags="{{var_team}}"), expected).category == "param.type"


def test_tolerant_parsing_reaches_the_parameters() -> None:
    fenced = '```json\n{"name": "get_salary", "arguments": "{\\"employee_id\\": 42}"}\n```'
    openai_shape = '{"function": {"name": "get_salary", "arguments": {"employee_id": 42}}}'
    assert check(fenced).overall and check(openai_shape).overall


def test_one_of_accepts_any_option_and_omittable_may_be_left_out() -> None:
    arguments = {"employee_id": OneOf((42, 43)), "currency": OneOf(("EUR", "euro"), omittable=True)}
    assert check_against(
        call("get_salary", employee_id=43, currency="Euro"), "get_salary", arguments, TOOLS
    ).overall
    assert check_against(call("get_salary", employee_id=42), "get_salary", arguments, TOOLS).overall
    verdict = check_against(call("get_salary", employee_id=44), "get_salary", arguments, TOOLS)
    assert verdict.category == "param.value" and "one of 42, 43" in verdict.detail


def test_a_sample_whose_expected_tool_was_not_shown_is_refused() -> None:
    with pytest.raises(ValueError, match="not in the tool list"):
        check_call(call("x"), ToolCall("fire_employee", {}), TOOLS)
    assert check_call(call("x", a=1), ToolCall("x", {"a": "1 "}), []).category == "param.type"


def test_rates_use_the_paper_subsets() -> None:
    outputs = [
        '<tool_call>{"name": "get_salary"',
        '<tool_call>{"name": "get_salary", "arguments": [}</tool_call>',
        "Let me think about it.",
        "The answer is 42.",
        call("search_employee", name="Ana"),
        call("get_salary", employee_id=41),
        call("get_salary"),
        *[call("get_salary", employee_id=42)] * 3,
    ]
    scores = score(check(o) for o in outputs)
    assert (scores.total, scores.structural_ok, scores.tool_ok, scores.parameters_ok, scores.overall_ok) == (
        10,
        8,
        5,
        3,
        3,
    )
    assert (scores.structural, scores.tool, scores.parameters, scores.overall) == (0.8, 5 / 8, 3 / 5, 0.3)
    assert scores.categories == {
        "structural": 2,
        "tool.prose": 2,
        "tool.wrong": 1,
        "param.missing": 1,
        "param.value": 1,
    }
    assert score([]).as_dict()["overall"] is None


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_characters="<"), max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), JSON_VALUES, max_size=4))
def test_the_expected_call_written_out_always_passes(arguments: dict[str, Any]) -> None:
    expected = ToolCall("free_form", arguments)
    tools = [ToolSpec("free_form", "", {"type": "object"})]
    verdict = check_call(expected.text(), expected, tools)
    assert verdict.overall, verdict.detail


# ---- arguments by reference (memory keys) ------------------------------------------------------------------
SUMMARIZE = ToolSpec("summarize", "Write the answer from earlier results.", {
    "type": "object",
    "properties": {"topic": {"type": "string"},
                   "data": {"anyOf": [{"type": "object"}, {"type": "array"}, {"type": "string"}]}},
    "required": ["topic", "data"],
})
BY_REFERENCE = ToolCall("summarize", {
    "topic": "performance", "data": {"employee": "memory_get_employee", "reviews": "memory_list_reviews"}})


def check_reference(data: Any) -> Verdict:
    return check_call(call_text("summarize", {"topic": "performance", "data": data}), BY_REFERENCE, [SUMMARIZE])


def test_reference_arguments_pass_with_the_right_keys_only() -> None:
    assert check_reference({"employee": "memory_get_employee", "reviews": "memory_list_reviews"}).overall
    assert check_reference({"reviews": "memory_list_reviews", "employee": " memory_get_employee "}).overall
    wrong = {
        "another step's result": {"employee": "memory_search_employee", "reviews": "memory_list_reviews"},
        "a repeat's key": {"employee": "memory_get_employee_2", "reviews": "memory_list_reviews"},
        "keys swapped": {"employee": "memory_list_reviews", "reviews": "memory_get_employee"},
        "a key left out": {"employee": "memory_get_employee"},
        "one key for all": "memory_get_employee",
        "the result copied": {"employee": {"employee_id": "E-1"}, "reviews": "memory_list_reviews"},
        # the executor resolves keys as written: another spelling would reach the tool as plain text
        "a key in other case": {"employee": "Memory_Get_Employee", "reviews": "memory_list_reviews"},
    }
    for why, data in wrong.items():
        verdict = check_reference(data)
        assert (verdict.tool, verdict.parameters, verdict.category) == (True, False, "param.value"), why
        assert [p.parameter for p in verdict.problems] == ["data"], why
    assert check_call(call_text("summarize", {"topic": "performance", "data": "memory_list_reviews"}),
                      ToolCall("summarize", {"topic": "performance", "data": "memory_list_reviews"}), [SUMMARIZE]).overall
