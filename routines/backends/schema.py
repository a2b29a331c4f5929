"""JSON schemas for constrained decoding: a tool's parameters with string lengths capped and no extra
properties, and the schema of one call to any of several tools.

Small models loop inside unbounded strings under a grammar; capping ``maxLength`` and closing objects with
``additionalProperties: false`` made constrained SmolLM2 output always parse (design.md section 5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from routines.backends.base import ToolSpec

_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("$defs", "definitions", "patternProperties")


NO_CLOSING_TAG = "^([^<]|<[^/])*<?$"
"""A string pattern without ``</``: inside a call, a string holding ``</tool_call>`` would end the call
for every parser that looks for the closing tag (the small model does try to write one there)."""


def cap_schema(schema: Any, max_string_length: int, *, string_pattern: str | None = None,
               max_free_properties: int | None = None) -> Any:
    """A copy of ``schema`` with every free string capped at ``max_string_length`` characters (and given
    ``string_pattern`` unless it has a pattern), ``additionalProperties: false`` on every object that
    declares ``properties``, and, with ``max_free_properties``, at most that many keys in an object that
    declares none (a free-form ``data`` object, where a small model otherwise adds keys until its token cap)."""
    if not isinstance(schema, Mapping):
        return schema  # ``true``/``false`` schemas

    def cap(sub: Any) -> Any:
        return cap_schema(sub, max_string_length, string_pattern=string_pattern, max_free_properties=max_free_properties)

    out: dict[str, Any] = dict(schema)
    declared = out.get("type")
    types = declared if isinstance(declared, list) else [declared]
    if "string" in types and "enum" not in out and "const" not in out:
        out["maxLength"] = min(int(out.get("maxLength", max_string_length)), max_string_length)
        if string_pattern and "pattern" not in out and "format" not in out:
            out["pattern"] = string_pattern
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: cap(v) for k, v in out["properties"].items()}
        out["additionalProperties"] = False
    else:
        if isinstance(out.get("additionalProperties"), Mapping):
            out["additionalProperties"] = cap(out["additionalProperties"])
        if max_free_properties is not None and "object" in types and "patternProperties" not in out:
            out["maxProperties"] = min(int(out.get("maxProperties", max_free_properties)), max_free_properties)
    items = out.get("items")
    if isinstance(items, Mapping):
        out["items"] = cap(items)
    elif isinstance(items, list):
        out["items"] = [cap(s) for s in items]
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [cap(s) for s in out[key]]
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {k: cap(v) for k, v in out[key].items()}
    return out


def capped(tool: ToolSpec, max_string_length: int) -> ToolSpec:
    params = tool.parameters or {"type": "object", "properties": {}}
    return ToolSpec(tool.name, tool.description, cap_schema(params, max_string_length))


def call_schema(tools: Sequence[ToolSpec], max_string_length: int = 256) -> dict[str, Any]:
    """``{"name": <one of tools>, "arguments": {...fitting that tool...}}``."""
    options = []
    for tool in tools:
        params = cap_schema(tool.parameters or {"type": "object", "properties": {}}, max_string_length)
        params.setdefault("type", "object")
        options.append({
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": params},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    return options[0] if len(options) == 1 else {"anyOf": options}


def pin_arguments(tool: ToolSpec, values: Mapping[str, Any]) -> ToolSpec:
    """``tool`` with each of ``values`` fixed (JSON-schema ``const``, required): the schema of a call whose
    bound arguments are already decided, so a grammar writes them for the model and it fills only the rest.
    Properties keep the tool's order (a grammar writes keys in schema order); a pinned name the schema does
    not declare comes last. A value whose JSON holds ``</`` stays free (forced, it would end the call)."""
    values = {k: v for k, v in values.items() if "</" not in json.dumps(v, ensure_ascii=False)}
    if not values:
        return tool
    params = dict(tool.parameters or {"type": "object", "properties": {}})
    properties = dict(params.get("properties") or {})
    for name, value in values.items():
        declared = properties.get(name)
        described = {"description": declared["description"]} if isinstance(declared, Mapping) and "description" in declared else {}
        properties[name] = {**described, "const": value}
    params["properties"] = properties
    params["required"] = list(dict.fromkeys([*params.get("required", []), *values]))
    return ToolSpec(tool.name, tool.description, params)
