"""Agreement between our checker and BFCL's ``ast_checker`` on BFCL's own data (issue 8, item 5).

Model outputs are made from BFCL's possible answers (the first acceptable value of every parameter, and
variants) and perturbed versions of them; both checkers judge every output and we count how often they
agree. *Comparable* perturbations test what both checkers mean to judge the same way. *Probes* test the
places where the checkers differ on purpose: ours accepts numeric strings for numbers, ``5.0`` for an
integer and a parameter left to its documented default; BFCL drops ``,./-_*^`` and spaces from strings
before comparing. Probes are reported apart and explained in ``docs/bfcl-agreement.md``.

Parallel entries: our checker judges one call at a time, so a parallel output passes when it has as many
calls as expected and the calls can be paired one to one with the expected calls so that every pair
passes (a perfect bipartite matching). BFCL pairs greedily in the expected order.

``python benchmarks/bfcl_agreement.py`` runs it all, prints the tables and writes
``docs/bfcl-agreement.json``; :func:`evaluate` is the part to call from code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from evals import bfcl_data
from evals.bfcl_data import Entry, concrete, expectation, omittable, tool_specs
from evals.checker import check_against
from routines.backends.scripted import call_text

Calls = list[tuple[str, dict[str, Any]]]
PROBES = frozenset({"numeric_string", "int_as_float", "omit_default", "punctuation"})
_BFCL_PUNCTUATION = ",./-_*^"


@dataclass(frozen=True)
class Outcome:
    entry_id: str
    category: str
    perturbation: str
    bfcl_valid: bool
    bfcl_error: str | None
    ours_valid: bool
    ours_category: str | None
    ours_detail: str
    calls: Calls

    @property
    def agree(self) -> bool:
        return self.bfcl_valid == self.ours_valid

    @property
    def probe(self) -> bool:
        return self.perturbation in PROBES

    @property
    def kind(self) -> str:
        bfcl = "valid" if self.bfcl_valid else self.bfcl_error
        return f"{self.perturbation}: bfcl={bfcl} ours={self.ours_category or 'valid'}"


# --- the two checkers ----------------------------------------------------------------------------------


def run_bfcl(entry: Entry, calls: Calls) -> tuple[bool, str | None]:
    checker = bfcl_data.load_ast_checker()
    output = [{name: json.loads(json.dumps(args))} for name, args in calls]
    result = checker(
        list(entry.functions),
        output,
        list(entry.answers),
        bfcl_data.python_language(),
        entry.category,
        bfcl_data.CHECKER_MODEL_NAME,
    )
    return bool(result["valid"]), None if result["valid"] else str(result.get("error_type"))


def run_ours(entry: Entry, calls: Calls) -> tuple[bool, str | None, str]:
    tools = tool_specs(entry)
    expected = [(name, expectation(params, entry.function(name))) for name, params in entry.expected_calls()]
    if "parallel" not in entry.category:
        name, arguments = expected[0]
        verdict = check_against("".join(call_text(n, a) for n, a in calls), name, arguments, tools)
        return verdict.overall, verdict.category, verdict.detail
    if len(calls) != len(expected):
        return False, "tool.count", f"{len(calls)} calls, expected {len(expected)}"
    verdicts = [
        [check_against(call_text(n, a), name, args, tools) for n, a in calls] for name, args in expected
    ]
    if _perfect_matching([[v.overall for v in row] for row in verdicts]):
        return True, None, ""
    for col in range(len(calls)):
        if not any(row[col].overall for row in verdicts):
            column = [row[col] for row in verdicts]
            named = [v for v in column if v.tool] or column
            return False, named[0].category, named[0].detail
    return False, "param.value", "two calls match the same expected call and another matches none"


def _perfect_matching(ok: list[list[bool]]) -> bool:
    """Every row (expected call) gets its own column (output call) with ``ok[row][col]`` (Kuhn's algorithm)."""
    owner: dict[int, int] = {}

    def place(row: int, seen: set[int]) -> bool:
        for col, good in enumerate(ok[row]):
            if good and col not in seen:
                seen.add(col)
                if col not in owner or place(owner[col], seen):
                    owner[col] = row
                    return True
        return False

    return all(place(row, set()) for row in range(len(ok)))


# --- model outputs -------------------------------------------------------------------------------------


def _base(entry: Entry, pick: int = 0) -> Calls:
    return [(name, concrete(params, entry.function(name), pick)) for name, params in entry.expected_calls()]


def _props(function: dict[str, Any]) -> dict[str, Any]:
    return function["parameters"].get("properties") or {}


@dataclass(frozen=True)
class Param:
    """One parameter of a call being perturbed: its value, BFCL doc, acceptable values, and if required."""

    key: str
    value: Any
    doc: dict[str, Any]
    alts: list[Any]
    required: bool


_DROP = object()
"""What a parameter choice returns to remove the parameter."""
_NULL = object()
"""What a parameter choice returns to set the parameter to ``None`` (a plain ``None`` means "no change")."""
Choice = Callable[[Param], Any]
CallEdit = Callable[[str, dict[str, Any], Entry], tuple[str, dict[str, Any]] | None]


def _edit_param(entry: Entry, rng: Random, choose: Choice) -> Calls | None:
    """Change one parameter of one call, at random among those ``choose`` gives a new value (or _DROP)."""
    calls = _base(entry)
    answers = entry.expected_calls()
    options = []
    for index, (name, args) in enumerate(calls):
        function = entry.function(name)
        props, required = _props(function), set(function["parameters"].get("required") or [])
        for key, value in args.items():
            param = Param(key, value, props.get(key) or {}, answers[index][1].get(key, []), key in required)
            new = choose(param)
            if new is not None:
                options.append((index, key, new))
    if not options:
        return None
    index, key, new = rng.choice(options)
    name, args = calls[index]
    args = dict(args)
    if new is _DROP:
        del args[key]
    else:
        args[key] = None if new is _NULL else new
    calls[index] = (name, args)
    return calls


def _edit_call(entry: Entry, rng: Random, edit: CallEdit) -> Calls | None:
    calls = _base(entry)
    order = list(range(len(calls)))
    rng.shuffle(order)
    for index in order:
        changed = edit(*calls[index], entry)
        if changed is not None:
            calls[index] = changed
            return calls
    return None


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _wrong(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7919
    if isinstance(value, float):
        return value + 7919.5
    if isinstance(value, str):
        return value + " zzq"
    if isinstance(value, list):
        return [*value, value[-1]] if value else ["zzq"]
    if isinstance(value, dict):
        if not value:
            return {"zzq": 1}
        first = next(iter(value))
        return {**value, first: _wrong(value[first])}
    return "zzq"


def _wrong_value(p: Param) -> Any:
    new = _wrong(p.value)
    return None if any(_same(new, a) for a in p.alts) else new


def _wrong_type(p: Param) -> Any:
    kind = p.doc.get("type")
    if kind in (None, "any"):
        return None
    return 7919 if kind == "string" else "zzq"


def _drop_required(p: Param) -> Any:
    return _DROP if p.required else None


def _defaults_to_value(p: Param) -> bool:
    return "default" in p.doc and _same(p.doc["default"], p.value)


def _drop_expected(p: Param) -> Any:
    return _DROP if not (p.required or omittable(p.alts) or _defaults_to_value(p)) else None


def _omit_default(p: Param) -> Any:
    return _DROP if not (p.required or omittable(p.alts)) and _defaults_to_value(p) else None


def _numeric_string(p: Param) -> Any:
    numeric = p.doc.get("type") in ("integer", "float") and type(p.value) in (int, float)
    return str(p.value) if numeric else None


def _int_as_float(p: Param) -> Any:
    return float(p.value) if p.doc.get("type") == "integer" and type(p.value) is int else None


def _float_as_int(p: Param) -> Any:
    integral = p.doc.get("type") == "float" and type(p.value) is float and p.value.is_integer()
    return int(p.value) if integral else None


def _punctuation(p: Param) -> Any:
    if not isinstance(p.value, str):
        return None
    new = p.value.translate(str.maketrans("", "", _BFCL_PUNCTUATION))
    return new if new != p.value and new.strip() else None


def _case_space(p: Param) -> Any:
    if not isinstance(p.value, str) or p.value.upper() == p.value:
        return None
    return "  " + p.value.upper().replace(" ", "  ") + " "


def _list_reversed(p: Param) -> Any:
    ok = isinstance(p.value, list) and p.value[::-1] != p.value
    return p.value[::-1] if ok and not any(_same(p.value[::-1], a) for a in p.alts) else None


def _dict_key_dropped(p: Param) -> Any:
    if not isinstance(p.value, dict) or not p.value:
        return None
    return {k: v for k, v in p.value.items() if k != next(iter(p.value))}


def _bool_as_int(p: Param) -> Any:
    return int(p.value) if isinstance(p.value, bool) else None


def _null(p: Param) -> Any:
    return None if p.value is None else _NULL


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [_upper(v) for v in value]
    if isinstance(value, dict):
        return {k: _upper(v) for k, v in value.items()}
    return value


def _nested_case(p: Param) -> Any:
    new = _upper(p.value)
    return new if isinstance(p.value, list | dict) and new != p.value else None


def _extra_param(name: str, args: dict[str, Any], entry: Entry) -> tuple[str, dict[str, Any]]:
    return name, {**args, "zz_extra": "zzq"}


def _other_tool(name: str, args: dict[str, Any], entry: Entry) -> tuple[str, dict[str, Any]] | None:
    others = [doc["name"] for doc in entry.functions if doc["name"] != name]
    return (others[0], args) if others else None


def _invented_tool(name: str, args: dict[str, Any], entry: Entry) -> tuple[str, dict[str, Any]]:
    return name + "_zz", args


def _minimal(entry: Entry, rng: Random) -> Calls | None:
    calls, changed = [], False
    for (name, args), (_, params) in zip(_base(entry), entry.expected_calls(), strict=True):
        required = set(entry.function(name)["parameters"].get("required") or [])
        kept = {k: v for k, v in args.items() if k in required or not omittable(params.get(k, []))}
        changed |= kept != args
        calls.append((name, kept))
    return calls if changed else None


def _alt_value(entry: Entry, rng: Random) -> Calls | None:
    calls = _base(entry, pick=-1)
    return calls if calls != _base(entry) else None


def _param(choose: Choice) -> Callable[[Entry, Random], Calls | None]:
    return lambda entry, rng: _edit_param(entry, rng, choose)


def _call(edit: CallEdit) -> Callable[[Entry, Random], Calls | None]:
    return lambda entry, rng: _edit_call(entry, rng, edit)


PERTURBATIONS: dict[str, Callable[[Entry, Random], Calls | None]] = {
    # comparable: both checkers mean to accept these ...
    "exact": lambda entry, rng: _base(entry),
    "minimal": _minimal,
    "alt_value": _alt_value,
    "case_space": _param(_case_space),
    "nested_case": _param(_nested_case),
    "float_as_int": _param(_float_as_int),
    "shuffled": lambda entry, rng: _base(entry)[::-1] if len(entry.answers) > 1 else None,
    # ... and to reject these (unless BFCL lists the result as acceptable)
    "wrong_value": _param(_wrong_value),
    "wrong_type": _param(_wrong_type),
    "bool_as_int": _param(_bool_as_int),
    "null_value": _param(_null),
    "list_reversed": _param(_list_reversed),
    "dict_key_dropped": _param(_dict_key_dropped),
    "drop_required": _param(_drop_required),
    "drop_expected": _param(_drop_expected),
    "extra_param": _call(_extra_param),
    "other_tool": _call(_other_tool),
    "invented_tool": _call(_invented_tool),
    "extra_call": lambda entry, rng: [*_base(entry), _base(entry)[0]],
    "missing_call": lambda entry, rng: _base(entry)[:-1] if len(entry.answers) > 1 else None,
    # probes: where the two checkers differ on purpose
    "numeric_string": _param(_numeric_string),
    "int_as_float": _param(_int_as_float),
    "omit_default": _param(_omit_default),
    "punctuation": _param(_punctuation),
}


def evaluate(
    entries: Sequence[Entry], seed: int = 0, perturbations: Sequence[str] | None = None
) -> list[Outcome]:
    """Both checkers on every applicable perturbation of every entry (seeded: same seed, same outputs)."""
    names = list(perturbations or PERTURBATIONS)
    outcomes = []
    for entry in entries:
        for name in names:
            calls = PERTURBATIONS[name](entry, Random(f"{seed}:{entry.id}:{name}"))
            if calls is None:
                continue
            outcomes.append(
                Outcome(
                    entry.id, entry.category, name, *run_bfcl(entry, calls), *run_ours(entry, calls), calls
                )
            )
    return outcomes
