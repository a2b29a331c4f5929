"""JSON schemas for constrained decoding: a tool's parameters with string lengths capped and no extra
properties, and the schema of one call to any of several tools.

Small models loop inside unbounded strings under a grammar; capping ``maxLength`` and closing objects with
``additionalProperties: false`` made constrained SmolLM2 output always parse (design.md section 5).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from routines.backends.base import ToolSpec


def cap_schema(schema: dict[str, Any], max_string_length: int) -> dict[str, Any]:
    """A copy of ``schema`` with every string capped and every object closed."""
    out = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            kinds = node.get("type")
            kinds = kinds if isinstance(kinds, list) else [kinds]
            if "string" in kinds and "enum" not in node and "const" not in node:
                node["maxLength"] = min(int(node.get("maxLength", max_string_length)), max_string_length)
            if "object" in kinds or "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(out)
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
