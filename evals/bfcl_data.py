"""BFCL's own AST data, read from the installed ``bfcl-eval`` package, and its checker (design 8).

``bfcl-eval`` is installed ``--no-deps``: importing its ``ast_checker`` normally drags in every model
client through ``bfcl_eval.constants.model_config``, so :func:`load_ast_checker` puts a stub module with
the one name the checker uses in its place first.

This module also translates BFCL's formats into ours: function docs (types ``string``, ``integer``,
``float``, ``boolean``, ``array``, ``tuple``, ``dict``, ``any``) into JSON Schema, and possible answers
(a list of acceptable values per parameter, ``""`` meaning "may be left out") into expected arguments made
of :class:`~evals.checker.OneOf`.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from evals.checker import OneOf
from evals.errors import BfclUnavailable
from routines.backends.base import ToolSpec

CATEGORIES: tuple[str, ...] = ("simple_python", "multiple", "parallel")
CHECKER_MODEL_NAME = "routines-checker"
"""The model name we hand BFCL's checker; the stub config says it keeps dots in function names."""

_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}
OMIT = ""
"""BFCL's marker, inside a list of acceptable values, for "the parameter may be left out"."""

AstChecker = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    """One BFCL test case: its function docs and, per expected call, ``{name: {param: [acceptable]}}``."""

    id: str
    category: str
    functions: tuple[dict[str, Any], ...]
    answers: tuple[dict[str, dict[str, list[Any]]], ...]

    def function(self, name: str) -> dict[str, Any]:
        for doc in self.functions:
            if doc["name"] == name:
                return doc
        raise KeyError(f"{self.id}: no function {name!r} in the entry's docs")

    def expected_calls(self) -> list[tuple[str, dict[str, list[Any]]]]:
        return [next(iter(answer.items())) for answer in self.answers]


def _package_dir() -> Path:
    try:
        package = importlib.import_module("bfcl_eval")
    except ImportError as exc:
        raise BfclUnavailable(
            f"cannot import bfcl_eval ({exc}); install it with `pip install --no-deps bfcl-eval`"
        ) from exc
    return Path(next(iter(package.__path__)))


def data_dir() -> Path:
    return _package_dir() / "data"


@cache
def load_ast_checker() -> AstChecker:
    """BFCL's ``ast_checker``, imported behind a stub ``model_config`` (design 8)."""
    _package_dir()
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        stub = types.ModuleType(name)
        stub.__doc__ = "Stub: ast_checker only asks whether a model turns '.' into '_' in function names."
        config = types.SimpleNamespace(underscore_to_dot=False)
        stub.MODEL_CONFIG_MAPPING = defaultdict(lambda: config)  # type: ignore[attr-defined]
        sys.modules[name] = stub
    try:
        module = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    except ImportError as exc:
        raise BfclUnavailable(
            f"cannot import BFCL's ast_checker ({exc}); is bfcl-eval installed whole?"
        ) from exc
    return module.ast_checker  # type: ignore[no-any-return]


def python_language() -> Any:
    from bfcl_eval.constants.enums import Language

    return Language.PYTHON


def load_entries(category: str, limit: int | None = None) -> list[Entry]:
    """The first ``limit`` entries (all by default) of one BFCL category, docs joined to answers by id."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; choose from {', '.join(CATEGORIES)}")
    root = data_dir()
    docs = _read_jsonl(root / f"BFCL_v4_{category}.json")
    answers = {
        row["id"]: row["ground_truth"]
        for row in _read_jsonl(root / "possible_answer" / f"BFCL_v4_{category}.json")
    }
    entries = []
    for row in docs[:limit] if limit is not None else docs:
        if row["id"] not in answers:
            raise ValueError(f"BFCL data is inconsistent: {row['id']} has no possible answer")
        entries.append(Entry(row["id"], category, tuple(row["function"]), tuple(answers[row["id"]])))
    return entries


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise BfclUnavailable(f"BFCL data file {path} is missing; reinstall bfcl-eval")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# --- formats -------------------------------------------------------------------------------------------


def to_json_schema(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A BFCL parameter doc (any depth) as JSON Schema: ``dict`` -> object, ``float`` -> number, ``tuple`` ->
    array, ``any`` -> no type; ``properties``, ``items``, ``required``, ``enum``, ``default`` kept."""
    schema: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "type":
            mapped = _TYPES.get(value, value) if isinstance(value, str) else value
            if mapped is not None:
                schema["type"] = mapped
        elif key == "properties" and isinstance(value, Mapping):
            schema["properties"] = {k: to_json_schema(v) for k, v in value.items() if isinstance(v, Mapping)}
        elif key == "items" and isinstance(value, Mapping):
            schema["items"] = to_json_schema(value)
        elif key in ("required", "enum", "default", "description"):
            schema[key] = value
    return schema


def tool_specs(entry: Entry) -> list[ToolSpec]:
    return [
        ToolSpec(d["name"], d.get("description", ""), to_json_schema(d["parameters"]))
        for d in entry.functions
    ]


def _is_dict_type(doc: Mapping[str, Any]) -> bool:
    return doc.get("type") == "dict"


def _items_are_dicts(doc: Mapping[str, Any]) -> bool:
    return doc.get("type") in ("array", "tuple") and _is_dict_type(doc.get("items") or {})


def _pattern(value: Any, doc: Mapping[str, Any]) -> Any:
    """One acceptable value as our checker's expected value: BFCL writes dicts (and lists of dicts) as
    patterns whose every key holds its own list of acceptable values."""
    if _is_dict_type(doc) and isinstance(value, dict):
        props = doc.get("properties") or {}
        return {k: _one_of(alts, props.get(k) or {}) for k, alts in value.items()}
    if _items_are_dicts(doc) and isinstance(value, list):
        return [_pattern(v, doc["items"]) for v in value]
    return value


def _one_of(alternatives: list[Any], doc: Mapping[str, Any]) -> OneOf:
    return OneOf(
        options=tuple(_pattern(a, doc) for a in alternatives if not _is_omit(a)),
        omittable=omittable(alternatives),
    )


def expectation(params: Mapping[str, list[Any]], function: Mapping[str, Any]) -> dict[str, OneOf]:
    """BFCL possible answers for one call as expected arguments for :func:`evals.checker.check_against`."""
    props = function["parameters"].get("properties") or {}
    return {name: _one_of(alts, props.get(name) or {}) for name, alts in params.items()}


def concrete(params: Mapping[str, list[Any]], function: Mapping[str, Any], pick: int = 0) -> dict[str, Any]:
    """A model output built from the possible answers: acceptable value number ``pick`` (0 first, -1 last)
    of every parameter, recursively inside dict patterns; parameters with no value but ``""`` left out."""
    props = function["parameters"].get("properties") or {}
    out: dict[str, Any] = {}
    for name, alts in params.items():
        values = [a for a in alts if not _is_omit(a)]
        if values:
            out[name] = _concrete_value(values[pick], props.get(name) or {}, pick)
    return out


def _concrete_value(value: Any, doc: Mapping[str, Any], pick: int) -> Any:
    if _is_dict_type(doc) and isinstance(value, dict):
        return concrete(value, {"parameters": doc}, pick)
    if _items_are_dicts(doc) and isinstance(value, list):
        return [_concrete_value(v, doc["items"], pick) for v in value]
    return value


def _is_omit(value: Any) -> bool:
    return isinstance(value, str) and value == OMIT


def omittable(alternatives: list[Any]) -> bool:
    """The parameter may be left out (BFCL lists ``""`` among its acceptable values)."""
    return any(_is_omit(a) for a in alternatives)
