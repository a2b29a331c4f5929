"""The ``when`` condition language: a real parser, a small safe evaluator, errors that say where."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from routines.bindings import BindingError, RunState
from routines.conditions import ConditionSyntaxError, condition_refs, evaluate, parse_condition


@pytest.fixture
def state() -> RunState:
    return RunState(
        inputs={
            "name": "Ada",
            "amount": 1200,
            "rate": 0.5,
            "urgent": True,
            "tags": ["vip", "eu"],
            "none": None,
        },
        system={"user_id": "u-17"},
        steps={"1": {"role": "HR", "level": 3, "teams": ["payroll"]}, "2": {"matches": [], "count": 0}},
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # comparisons, on references written both ways
        ("{{steps.1.role}} == 'hr'", True),  # text comparison ignores case
        ('steps.1.role == "HR"', True),
        ("steps.1.role != 'hr'", False),
        ("inputs.amount > 1000", True),
        ("inputs.amount >= 1200", True),
        ("inputs.amount < 1200", False),
        ("inputs.amount <= 1200.0", True),
        ("inputs.rate == 0.5", True),
        ("inputs.rate < 1e1", True),
        ("-1 < steps.2.count", True),
        ("steps.2.count == 0", True),
        ("system.user_id == 'u-17'", True),
        # in / not in
        ("'vip' in inputs.tags", True),
        ("'VIP' in inputs.tags", True),
        ("'us' not in inputs.tags", True),
        ("steps.1.role in ['hr', 'hr_admin']", True),
        ("steps.1.role not in ['hr', 'hr_admin']", False),
        ("'da' in inputs.name", True),  # substring of text
        ("steps.1.level in [1, 2, 3]", True),
        ("'x' in []", False),
        # and / or / not, precedence and parentheses
        ("inputs.urgent and steps.1.level > 2", True),
        ("not inputs.urgent or steps.1.level > 2", True),
        ("not inputs.urgent or steps.1.level > 5", False),
        ("not (inputs.urgent and steps.1.level > 2)", False),
        ("inputs.urgent and (steps.1.level > 5 or 'vip' in inputs.tags)", True),
        ("not not inputs.urgent", True),
        ("false or true and false", False),  # and binds tighter than or
        ("(false or true) and false", False),
        ("true or false and false", True),
        ("not {{steps.1.role}} in ['hr', 'hr_admin']", False),  # not applies to the whole comparison
        # literals
        ("inputs.none == null", True),
        ("inputs.none == None", True),
        ("inputs.urgent == true", True),
        ("inputs.urgent == True", True),
        ("'it\\'s' == \"it's\"", True),
        ("steps.2.matches", False),  # an operand alone: its truth value
        ("steps.1.teams", True),
        ("null", False),
        ("0", False),
        ("'text'", True),
    ],
)
def test_evaluates(state: RunState, expr: str, expected: bool) -> None:
    assert evaluate(expr, state) is expected


@pytest.mark.parametrize(
    ("expr", "position"),
    [
        ("{{steps.1.role}} = 'hr'", 17),
        ("steps.1.role == hr", 16),  # text without quotes is an unknown name
        ("steps.1.role ==", 15),
        ("(steps.1.role == 'hr'", 21),
        ("steps.1.level > 1 > 0", 18),
        ("'unterminated", 0),
        ("steps.1.role == 'hr' && inputs.urgent", 21),
        ("inputs.tags[0] == 'vip'", 11),
        ("[1, 2", 5),
        ("not", 3),
        ("steps", 0),
    ],
)
def test_syntax_errors_say_where(expr: str, position: int) -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(expr)
    assert f"position {position}" in str(info.value)
    assert repr(expr) in str(info.value)


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os')",
        "__import__('os').system('echo hacked')",
        "open('/etc/passwd').read()",
        "exec('x=1')",
        "steps.1.role.__class__.__mro__",  # a path, not attribute access: fails at run time, not as Python
        "lambda: 1",
        "[x for x in inputs.tags]",
        "inputs.amount + 1 > 0",
        "print(1)",
        "1 if true else 0",
    ],
)
def test_python_is_not_this_language(state: RunState, expr: str) -> None:
    with pytest.raises((ConditionSyntaxError, BindingError)):
        evaluate(expr, state)


def test_unknown_names_are_syntax_errors_that_suggest_quotes() -> None:
    with pytest.raises(
        ConditionSyntaxError, match=r"unknown name '__import__' at position 0.*text needs quotes"
    ):
        parse_condition("__import__('os')")


def test_empty_condition() -> None:
    for expr in ("", "   "):
        with pytest.raises(ConditionSyntaxError, match="empty condition"):
            parse_condition(expr)


def test_never_calls_eval_or_compile(state: RunState, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the condition language must not use eval/exec/compile")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, refuse)
    assert evaluate("steps.1.role in ['hr'] and not inputs.none", state) is True
    with pytest.raises(ConditionSyntaxError):
        evaluate("__import__('os')", state)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("steps.3.ok", "steps has no '3'"),
        ("inputs.department == 'x'", "inputs has no 'department'"),
        ("steps.1.role.name == 'x'", "cannot take 'name' of steps.1.role, which is a str"),
        ("'x' in inputs.amount", "'in' needs a list or text"),
        ("inputs.amount > 'lots'", "cannot compare 1200 > 'lots'"),
    ],
)
def test_missing_values_are_errors_not_false(state: RunState, expr: str, message: str) -> None:
    with pytest.raises(BindingError, match=message):
        evaluate(expr, state)


def test_and_or_stop_early(state: RunState) -> None:
    assert evaluate("false and steps.9.missing", state) is False
    assert evaluate("true or steps.9.missing", state) is True


def test_condition_refs_lists_what_a_condition_reads() -> None:
    node = parse_condition("{{steps.1.role}} in ['hr', inputs.role] and not (system.user_id == 'x')")
    assert [str(r) for r in condition_refs(node)] == [
        "{{steps.1.role}}",
        "{{inputs.role}}",
        "{{system.user_id}}",
    ]
    assert condition_refs(parse_condition("true")) == []
