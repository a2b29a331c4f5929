"""Reading one tool call out of model text (design 4.2).

Tolerant of what models really write (code fences, prose around the tag, a missing closing tag, a bare
JSON object, ``arguments`` given as a JSON string) and strict about what matters: exactly one call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from routines.errors import CallParseError

ParseErrorKind = Literal["no_call", "malformed", "multiple_calls"]

_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```(?:json|tool_call)?\s*(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}

    def text(self) -> str:
        return "<tool_call>" + json.dumps(self.as_dict(), ensure_ascii=False) + "</tool_call>"


def _strip_fences(text: str) -> str:
    m = _FENCE.search(text)
    return m.group(1) if m else text


def _is_call(value: Any) -> bool:
    return isinstance(value, dict) and ("name" in value or isinstance(value.get("function"), dict))


def _objects(text: str) -> Iterator[tuple[Any, int]]:
    """Every complete JSON object in ``text`` with the index where it ends, left to right."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        yield value, end
        start = text.find("{", end)


def _decode_object(blob: str) -> Any:
    blob = _strip_fences(blob).strip()
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        pass
    # Text around the object (prose, a second call): take the first call object, refuse a second one.
    first = blob.find("{")
    if first < 0:
        raise CallParseError("malformed", "the tool call is not a JSON object")
    try:
        value, _ = json.JSONDecoder().raw_decode(blob, first)
    except json.JSONDecodeError as exc:
        raise CallParseError("malformed", f"the tool call is not valid JSON: {exc.msg} at char {exc.pos}") from None
    calls = [v for v, _ in _objects(blob) if _is_call(v)]
    if len(calls) > 1:
        raise CallParseError("multiple_calls", f"{len(calls)} calls in one turn; make exactly one call per turn")
    return calls[0] if calls else value


def _to_call(value: Any) -> ToolCall:
    if isinstance(value, list):
        if not value:
            raise CallParseError("malformed", "the tool call is an empty list; give one JSON object with 'name'")
        if len(value) == 1:
            value = value[0]
        else:
            raise CallParseError("multiple_calls", f"{len(value)} calls in one turn; make exactly one call per turn")
    if not isinstance(value, dict):
        raise CallParseError("malformed", "the tool call must be a JSON object with 'name' and 'arguments'")
    if "function" in value and isinstance(value["function"], dict):  # OpenAI's shape
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CallParseError("malformed", "the tool call has no 'name' string")
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise CallParseError("malformed", f"'arguments' is not valid JSON: {exc.msg}") from None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise CallParseError("malformed", "'arguments' must be a JSON object")
    return ToolCall(name=name.strip(), arguments=args)


def parse_tool_call(text: str) -> ToolCall:
    """Exactly one call from ``text`` or :class:`CallParseError`."""
    blocks = [b for b in _TAG.findall(text) if b.strip()]
    if len(blocks) > 1:
        raise CallParseError("multiple_calls", f"{len(blocks)} <tool_call> blocks in one turn; make exactly one call")
    if blocks:
        return _to_call(_decode_object(blocks[0]))
    fenced = [f for f in _FENCE.findall(text) if '"name"' in f]
    if len(fenced) > 1:
        raise CallParseError("multiple_calls", f"{len(fenced)} calls in one turn; make exactly one call per turn")
    candidate = fenced[0] if fenced else text
    if "{" in candidate and '"name"' in candidate:
        return _to_call(_decode_object(candidate))
    raise CallParseError(
        "no_call",
        'no tool call found; answer with exactly one <tool_call>{"name": ..., "arguments": {...}}</tool_call>',
    )
