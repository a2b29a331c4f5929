"""The hierarchical per-step checker (paper 5.1.1, design 7).

One model output is judged against the expected call in the paper's order, stopping at the first level
that fails:

1. **structural**: the output holds one parsable call (malformed JSON or a broken tag fails here);
2. **tool selection**: the call names the expected tool; prose instead of a call (``tool.prose``), two
   calls in one turn (``tool.count``), another listed tool (``tool.wrong``) or an unlisted one
   (``tool.invented``) fail here;
3. **parameters**: every argument right after normalisation; free-text parameters only present and of the
   right type. Problems are ``param.missing``, ``param.hallucinated``, ``param.type`` and ``param.value``.

Values are compared after normalisation: strings by NFKC, casefold and collapsed whitespace; numbers by
value (``5 == 5.0``; a numeric string counts where the schema says number or integer); booleans only
equal booleans; lists item by item in order; dicts key by key. A value equal to the expected one passes
whatever the schema says (variable-memory keys stand in for long values and earlier results). An expected
variable-memory key (``memory_get_employee``) is a reference: only that key passes, spelt exactly (spaces
around it aside), as the executor resolves it. A parameter the expected call
lacks is hallucinated unless it is documented and given at its schema default; a required one (from the
schema, or present in the expected call) is missing unless the schema default is the expected value.

Rates follow the paper's subsets (:func:`score`): structural over all samples, tool selection over the
structurally correct, parameters over those with the right tool, overall over all.

It is one module of about 400 lines on purpose: the checker's rules (levels, normalisation, value equality)
read top to bottom in one place, and every judgement of a call against gold goes through it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from routines.backends.base import ToolSpec
from routines.calls import CallParseError, ToolCall, parse_tool_call

Category = Literal[
    "context",
    "structural",
    "tool.prose",
    "tool.count",
    "tool.wrong",
    "tool.invented",
    "param.missing",
    "param.hallucinated",
    "param.type",
    "param.value",
]
CATEGORIES: tuple[Category, ...] = get_args(Category)
# When one call has several parameter problems, the verdict's category is the first of these present.
_PARAM_PRIORITY: tuple[Category, ...] = ("param.missing", "param.hallucinated", "param.type", "param.value")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an output; ``parameter`` is set for the ``param.*`` categories."""

    category: Category
    detail: str
    parameter: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "parameter": self.parameter, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    """The checker's judgement of one output. ``tool``/``parameters`` are ``None`` when not reached."""

    structural: bool
    tool: bool | None
    parameters: bool | None
    overall: bool
    category: Category | None
    detail: str
    call: ToolCall | None = None
    problems: tuple[Problem, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "structural": self.structural,
            "tool": self.tool,
            "parameters": self.parameters,
            "overall": self.overall,
            "category": self.category,
            "detail": self.detail,
            "call": self.call.as_dict() if self.call else None,
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass(frozen=True)
class OneOf:
    """Several acceptable values for one expected value (BFCL's possible answers). ``omittable``: the
    parameter or dict key may also be left out. Only adapters build these; :func:`check_call` never does."""

    options: tuple[Any, ...]
    omittable: bool = False


@dataclass(frozen=True)
class Scores:
    """Counts and rates on the paper's subsets; a rate is ``None`` when its subset is empty."""

    total: int
    structural_ok: int
    tool_ok: int
    parameters_ok: int
    overall_ok: int
    categories: dict[str, int] = field(default_factory=dict)

    @property
    def structural(self) -> float | None:
        return _rate(self.structural_ok, self.total)

    @property
    def tool(self) -> float | None:
        return _rate(self.tool_ok, self.structural_ok)

    @property
    def parameters(self) -> float | None:
        return _rate(self.parameters_ok, self.tool_ok)

    @property
    def overall(self) -> float | None:
        return _rate(self.overall_ok, self.total)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "structural": self.structural,
            "tool": self.tool,
            "parameters": self.parameters,
            "overall": self.overall,
            "counts": {
                "structural_ok": self.structural_ok,
                "tool_ok": self.tool_ok,
                "parameters_ok": self.parameters_ok,
                "overall_ok": self.overall_ok,
            },
            "categories": dict(self.categories),
        }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def score(verdicts: Iterable[Verdict]) -> Scores:
    """Aggregate verdicts: structural over all, tool over structurally correct, parameters over right-tool,
    overall over all; ``categories`` counts each failing verdict once, under its category."""
    items = list(verdicts)
    categories = Counter(v.category for v in items if v.category is not None)
    return Scores(
        total=len(items),
        structural_ok=sum(v.structural for v in items),
        tool_ok=sum(v.tool is True for v in items),
        parameters_ok=sum(v.parameters is True for v in items),
        overall_ok=sum(v.overall for v in items),
        categories={c: categories[c] for c in CATEGORIES if categories[c]},
    )


def check_call(
    output_text: str, expected: ToolCall, tools: Sequence[ToolSpec], free_text: Collection[str] = ()
) -> Verdict:
    """Judge ``output_text`` against ``expected``. ``tools`` is the tool list the model was shown (it tells
    a wrong tool from an invented one and gives the parameter schemas); ``free_text`` names parameters
    checked for presence and type only."""
    return check_against(output_text, expected.name, expected.arguments, tools, free_text)


def check_against(
    output_text: str,
    name: str,
    arguments: Mapping[str, Any],
    tools: Sequence[ToolSpec],
    free_text: Collection[str] = (),
) -> Verdict:
    """:func:`check_call` for adapters: expected values in ``arguments`` may be :class:`OneOf`."""
    by_name = {t.name: t for t in tools}
    if tools and name not in by_name:
        raise ValueError(
            f"the expected tool {name!r} is not in the tool list the model was shown "
            f"({', '.join(sorted(by_name))}); the sample is broken, rebuild it"
        )
    try:
        call = parse_tool_call(output_text)
    except CallParseError as exc:
        if exc.kind == "malformed":
            return _fail("structural", str(exc), structural=False)
        if exc.kind == "no_call":
            return _fail("tool.prose", "answered in prose instead of calling a tool")
        return _fail("tool.count", str(exc))
    if call.name != name:
        listed = call.name in by_name
        detail = f"called {call.name!r}, expected {name!r}" + ("" if listed else " (not an available tool)")
        return _fail("tool.wrong" if listed else "tool.invented", detail, call=call)
    schema = by_name[name].parameters if name in by_name else {}
    problems = _check_parameters(call.arguments, arguments, schema, set(free_text))
    if not problems:
        return Verdict(True, True, True, True, None, "", call)
    first = min(problems, key=lambda p: _PARAM_PRIORITY.index(p.category))
    detail = "; ".join(p.detail for p in problems)
    return Verdict(True, True, False, False, first.category, detail, call, tuple(problems))


def _fail(
    category: Category, detail: str, *, structural: bool = True, call: ToolCall | None = None
) -> Verdict:
    return Verdict(
        structural=structural,
        tool=False if structural else None,
        parameters=None,
        overall=False,
        category=category,
        detail=detail,
        call=call,
        problems=(Problem(category, detail),),
    )


def _check_parameters(
    given: Mapping[str, Any], expected: Mapping[str, Any], schema: Mapping[str, Any], free_text: set[str]
) -> list[Problem]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    problems: list[Problem] = []

    def add(category: Category, param: str, detail: str) -> None:
        problems.append(Problem(category, detail, param))

    required = [p for p in schema.get("required") or [] if isinstance(p, str)]
    required += [k for k, v in expected.items() if k not in required and not _omittable(v)]
    for param in required:
        prop = properties.get(param) or {}
        # left to the tool's default, which is the expected value: not missing
        defaulted = param in expected and "default" in prop and _equal(prop["default"], expected[param], prop)
        if param not in given and not defaulted:
            add("param.missing", param, f"missing parameter {param!r}")
    for param, value in given.items():
        prop = properties.get(param) or {}
        if param not in expected:
            if param not in properties:
                add("param.hallucinated", param, f"{param!r} is not a parameter of this tool")
            elif not ("default" in prop and _equal(value, prop["default"], prop)):
                add("param.hallucinated", param, f"{param!r} was not asked for (got {value!r})")
            continue
        want = expected[param]
        right_type = _fits(value, prop) if _typed(prop) else _same_kind(value, want)
        if param in free_text:
            if not right_type:
                add("param.type", param, f"{param!r} has the wrong type (got {value!r})")
        elif _equal(value, want, prop):
            continue
        elif not right_type:
            add("param.type", param, f"{param!r} has the wrong type: got {value!r}, expected {_show(want)}")
        else:
            add("param.value", param, f"{param!r} is {value!r}, expected {_show(want)}")
    return problems


def _omittable(value: Any) -> bool:
    return isinstance(value, OneOf) and value.omittable


def _show(value: Any) -> str:
    if isinstance(value, OneOf):
        return "one of " + ", ".join(_show(o) for o in value.options) if value.options else "nothing"
    return repr(value)


# --- normalisation -----------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_MEMORY_KEY = re.compile(r"memory_[A-Za-z0-9_]+")
"""A variable-memory key (``memory.variables``): compared exactly, since the executor resolves it as written."""
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unicode NFKC, casefold, whitespace collapsed and stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    found = (
        {kind}
        if isinstance(kind, str)
        else {k for k in kind if isinstance(k, str)}
        if isinstance(kind, list)
        else set()
    )
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            if isinstance(sub, Mapping):
                found |= _types(sub)
    return found


def _typed(schema: Mapping[str, Any]) -> bool:
    return bool(_types(schema))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any, allow_text: bool) -> int | float | None:
    if _is_number(value):
        return value
    if allow_text and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    return None


def _numeric(schema: Mapping[str, Any]) -> bool:
    return bool(_types(schema) & {"number", "integer"})


def _sub_schema(schema: Mapping[str, Any], key: str, name: str | None = None) -> Mapping[str, Any]:
    """``items`` (name None) or ``properties[name]`` of ``schema`` or of its anyOf/oneOf branches."""
    for candidate in [schema, *(schema.get("anyOf") or []), *(schema.get("oneOf") or [])]:
        if not isinstance(candidate, Mapping):
            continue
        sub = candidate.get(key)
        if name is not None and isinstance(sub, Mapping):
            sub = sub.get(name)
        if isinstance(sub, Mapping):
            return sub
    return {}


def _equal(value: Any, expected: Any, schema: Mapping[str, Any]) -> bool:
    """``value`` equals ``expected`` after normalisation (see module docs); ``schema`` describes both."""
    if isinstance(expected, OneOf):
        return any(_equal(value, option, schema) for option in expected.options)
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    if expected is None or value is None:
        return expected is None and value is None
    numeric = _numeric(schema)
    if _is_number(expected) or _is_number(value):
        left, right = _as_number(value, numeric), _as_number(expected, numeric)
        return left is not None and right is not None and left == right
    if isinstance(expected, str) and _MEMORY_KEY.fullmatch(expected):
        return isinstance(value, str) and value.strip() == expected
    if isinstance(expected, str):
        return isinstance(value, str) and normalize_text(value) == normalize_text(expected)
    if isinstance(expected, list | tuple):
        items = _sub_schema(schema, "items")
        return (
            isinstance(value, list | tuple)
            and len(value) == len(expected)
            and all(_equal(v, e, items) for v, e in zip(value, expected, strict=True))
        )
    if isinstance(expected, Mapping):
        if not isinstance(value, Mapping) or any(k not in expected for k in value):
            return False
        return all(
            _equal(value[k], e, _sub_schema(schema, "properties", k)) if k in value else _omittable(e)
            for k, e in expected.items()
        )
    return bool(value == expected)


def _fits(value: Any, schema: Mapping[str, Any]) -> bool:
    """``value`` is of a type ``schema`` allows (numeric strings count as numbers for numeric schemas)."""
    types = _types(schema)
    if not types:
        return True
    if isinstance(value, bool):
        return "boolean" in types
    if value is None:
        return "null" in types
    number = _as_number(value, allow_text=True)
    if "integer" in types and number is not None and float(number).is_integer():
        return True
    if "number" in types and number is not None:
        return True
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, list | tuple):
        items = _sub_schema(schema, "items")
        return "array" in types and all(_fits(v, items) for v in value)
    if isinstance(value, Mapping):
        return "object" in types
    return False


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "null" if value is None else type(value).__name__


def _same_kind(value: Any, expected: Any) -> bool:
    """Type check without a schema: the value's JSON kind is one the expected value has."""
    if isinstance(expected, OneOf):
        return any(_same_kind(value, option) for option in expected.options)
    return _kind(value) == _kind(expected)
