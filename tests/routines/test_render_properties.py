"""Property tests: the natural-language form round-trips, and the parser never fails any other way.

Generated names have no colon (validation refuses one: it separates name and description) and generated
texts do not themselves end in a tool, finish or I/O clause: such text is ambiguous by design."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from routines.model import Routine, Step
from routines.render import NL_FIELDS, RoutineParseError, parse_routine, render_routine

IO_FIELDS = (*NL_FIELDS, "input", "output")

# Words that, near the end of a text, could read as one of our clauses ("use the X tool", "call X",
# "end the workflow", "terminate", 使用X / 结束).
_CLAUSE_WORDS = {
    "use", "using", "uses", "with", "via", "call", "calling", "calls", "invoke", "invoking",
    "end", "ends", "terminate", "terminates", "finish", "finishes",
}  # fmt: skip
_CN_CLAUSE = re.compile(r"使用|调用|结束|终止")

WORDS = st.sampled_from(
    [
        "Get", "employee", "salary", "the", "tool", "workflow", "and", "then", "user", "Branch", "Step",
        "step", "2.", "3-1", "input", "output", "report", "当前", "员工", "工资", "工具", "流程", "并",
        "(HR)", "e.g.", "x_y", "v1.2", "100%", "'quoted'", "\"q\"", "<b>", "{{inputs.x}}", "&", "#1",
        "use", "using", "call", "end", "terminate", "finish", "with",
    ]
)  # fmt: skip
SAFE = st.sampled_from(["now", "data", "record", "first", "twice"])
PUNCT = st.sampled_from([" ", " ", " ", ", ", "; ", ". ", " - ", "，", "。", "、", "/", "", "；", "! ", "? "])
FREE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="[]:：\r\n"),
    min_size=1,
    max_size=8,
)


def _ends_in_clause(text: str) -> bool:
    words = re.findall(r"[A-Za-z]+", text.lower())
    return bool(set(words[-4:]) & _CLAUSE_WORDS or _CN_CLAUSE.search(text) or "[" in text or "]" in text)


@st.composite
def phrases(draw: st.DrawFn, *, colon: bool) -> str:
    parts = draw(st.lists(st.one_of(WORDS, WORDS, FREE), min_size=1, max_size=5))
    text = ""
    for part in parts:
        text += part + draw(PUNCT)
    if colon and draw(st.booleans()):
        text += ": " + draw(WORDS)
    text = " ".join(text.split())
    if not colon:
        text = text.replace(":", "").replace("：", "")
    text = text or draw(SAFE)
    if _ends_in_clause(text):  # push the clause word away from the end instead of discarding the example
        text += " " + " ".join(draw(st.lists(SAFE, min_size=4, max_size=4)))
    assume(text and not _ends_in_clause(text))
    return text


TOOLS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}(?:[.\-][A-Za-z0-9_]{1,6})?", fullmatch=True)
IO_TEXT = st.one_of(st.none(), phrases(colon=True))


@st.composite
def steps(draw: st.DrawFn, label: str, kind: str) -> Step:
    return Step(
        step=label,
        name=draw(phrases(colon=False)),
        description=draw(st.one_of(st.just(""), phrases(colon=True))),
        tool=None if kind == "branch" else draw(st.one_of(TOOLS, TOOLS, TOOLS, st.none())),
        type=kind,
        input=None if kind == "branch" else draw(IO_TEXT),
        output=None if kind == "branch" else draw(IO_TEXT),
    )


@st.composite
def routines(draw: st.DrawFn) -> Routine:
    """Structurally sound Routines: main steps 1..n, branch points with 2-3 branches of 1-3 steps (a branch
    may end the workflow), and usually a finish at the end."""
    out: list[Step] = []
    n = draw(st.integers(1, 5))
    for main in range(1, n + 1):
        last = main == n
        if not last and draw(st.integers(0, 3)) == 0:
            out.append(draw(steps(str(main), "branch")))
            for branch in range(1, draw(st.integers(2, 3)) + 1):
                size = draw(st.integers(1, 3))
                for index in range(1, size + 1):
                    kind = "finish" if index == size and draw(st.integers(0, 3)) == 0 else "branchnode"
                    out.append(draw(steps(f"{main}-{branch}_{index}", kind)))
        else:
            kind = "finish" if last and draw(st.integers(0, 5)) else "node"
            out.append(draw(steps(str(main), kind)))
    return Routine(id="gen.routine", name="Generated", steps=out)


def nl(routine: Routine, fields: tuple[str, ...]) -> list[dict[str, object]]:
    return [{f: getattr(s, f) for f in fields} for s in routine.steps]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(routines())
def test_round_trip(routine: Routine) -> None:
    parsed = parse_routine(render_routine(routine))
    assert nl(parsed, NL_FIELDS) == nl(routine, NL_FIELDS)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(routines())
def test_round_trip_with_io(routine: Routine) -> None:
    parsed = parse_routine(render_routine(routine, io=True))
    assert nl(parsed, IO_FIELDS) == nl(routine, IO_FIELDS)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(routines())
def test_round_trip_without_tool_names(routine: Routine) -> None:
    parsed = parse_routine(render_routine(routine, tool_names=False))
    fields = ("step", "name", "description", "type")
    assert nl(parsed, fields) == nl(routine, fields)
    assert all(s.tool is None for s in parsed.steps)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(routines())
def test_render_is_stable(routine: Routine) -> None:
    """Rendering what was parsed gives the same text again (what a model reads does not drift)."""
    text = render_routine(routine, io=True)
    assert render_routine(parse_routine(text), io=True) == text


def _parse_or_refuse(text: str) -> None:
    try:
        routine = parse_routine(text)
    except RoutineParseError as exc:
        assert str(exc)
        return
    assert isinstance(routine, Routine)
    assert routine.steps
    Routine.model_validate(routine.model_dump())  # a valid Routine, not just an object


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=300))
@example("Step 9999999999999999999999. x")
@example("Branch 3-0 Step 1. x, use the t tool")
@example("第十二步：\n分支一-二 步骤三：x")
@example("Step ١٢. Arabic-Indic digits")
@example("Routine: x - y\nStep 1. ; ; ; , and end the workflow")
@example("Step 1. [input: a] [output: b] [input: c], use the t tool, terminate")
@example("- 1) Step 1.\u2028Step 2.\x85Step 3.")
def test_parser_on_arbitrary_text(text: str) -> None:
    _parse_or_refuse(text)


STEPPY = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "Step ", "Branch ", "步骤", "分支", "第", "步", "- ", "* ", "1. ", "3-1", "_2", "2", " ", "\n", ":", "：",
                ".", "．", ",", "，", ";", "；", "use the ", " tool", "using ", "call ", "and end the workflow",
                "terminate", "使用", "工具", "并结束工作流", "[input: ", "[output: ", "]", "Routine: ", " - ", "`",
                "二十", "十",
            ]
        ),
        st.text(max_size=5),
    ),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(STEPPY)
def test_parser_on_step_like_text(text: str) -> None:
    _parse_or_refuse(text)
