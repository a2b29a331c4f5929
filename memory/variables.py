"""Variable memory (paper 3.4.2): a per-run store of tool results and long values behind ``memory_*`` keys.

Every step's whole result is stored under a key named after its tool (``memory_search_employee``), so a call
can hand over an earlier result by reference instead of copying it (design 4.2: no call longer than about 100
tokens). Inside a result, a long value is stored under a key of its own (``memory_members``) and the model
sees that key and a short preview instead. Keys in the model's arguments (a whole value at any depth of
objects and lists, or inside a string) are turned back into the stored values before the tool is called,
with the type the tool's schema asks for. One ``VariableMemory`` lives for one run: keys never outlive or
cross runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KEY_PREFIX = "memory_"
NESTED_BUDGET = 8
"""A ``nested`` observation is held to about this many thresholds (2,048 characters at the default 256).
Measured on ComplexFuncBench, 5,070 calls (``python -m scenarios.cfb.stats [--nested]``): a call needs a value
its model never saw in 1,024 calls with the ``fields`` layout; with ``nested`` in 466 (4 thresholds), 246 (6)
and 114 (8), observations 3,368 characters at the 95th percentile (``fields``: 2,046)."""
_KEY = re.compile(r"\bmemory_[A-Za-z0-9_]+\b")
_NAME = re.compile(r"[^A-Za-z0-9_]+")


DIGEST_CHARS = 40
"""A list item after the first shows its plain fields up to this long (a ``nested`` observation)."""
_MIN_KEYED = 40
"""A ``nested`` observation keeps values this short (a key and its preview would cost more)."""


def _is_key(value: Any, memory: VariableMemory) -> bool:
    return isinstance(value, str) and value in memory.values


def _digest(item: Mapping[str, Any]) -> dict[str, Any]:
    """An object by its short plain fields (a list item after the first, in a ``nested`` observation)."""
    return {k: v for k, v in item.items()
            if isinstance(v, (str, int, float, bool)) and len(_json(v)) <= DIGEST_CHARS}


def _keys_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return _KEY.findall(value)
    if isinstance(value, Mapping):
        return [k for v in value.values() for k in _keys_in(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys_in(v)]
    return []


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


@dataclass
class VariableMemory:
    """``threshold``: a value whose JSON text is longer than this many characters is stored."""

    threshold: int = 256
    preview_chars: int = 80
    nested: bool = False
    """How a long result is shown. False (``fields``): its short top-level fields, a key for each long one.
    True (``nested``): its shape, to any depth: long strings and the tail of long lists behind keys, every
    short value where it is (ids inside a list of hotels stay visible), the whole held to
    ``NESTED_BUDGET`` thresholds."""
    values: dict[str, Any] = field(default_factory=dict)
    results: set[str] = field(default_factory=set)
    """Keys that hold a step's whole result (the others hold long values found inside results)."""
    _previews: dict[str, str] = field(default_factory=dict, repr=False)

    # ---- storing ----------------------------------------------------------------------------------
    def _new_key(self, hint: str) -> str:
        base = KEY_PREFIX + (_NAME.sub("_", hint).strip("_").lower() or "value")
        key, n = base, 2
        while key in self.values:
            key, n = f"{base}_{n}", n + 1
        return key

    def put(self, value: Any, hint: str) -> str:
        """Store ``value`` (or find the key it is already stored under) and return its key."""
        for key, stored in self.values.items():
            if stored == value and type(stored) is type(value):
                return key
        key = self._new_key(hint)
        self.values[key] = value
        return key

    def observe(self, result: Any, hint: str) -> Observation:
        """Store a step's whole ``result`` under a key of its own (named after ``hint``, the tool) and its long
        values under theirs: what the model is shown of it, the key it can pass it by, and the keys this
        result added (each shown once, with its preview, in the turn that creates it)."""
        before = set(self.values)
        key = self._new_key(hint)  # a fresh key even for a repeated value: each step's result has its own
        self.values[key] = result
        self.results.add(key)
        shown = self.compress(result, hint)
        added = [k for k in self.values if k not in before and (k != key or shown == key)]
        if self.nested:  # shaping tries smaller forms; keep only the keys the shown form names
            named = set(_keys_in(shown))
            for k in [k for k in added if k not in named and k != key]:
                del self.values[k]
                self._previews.pop(k, None)
            added = [k for k in added if k in named]
        return Observation(key, shown, {k: self.preview(k) for k in added})

    def is_long(self, value: Any) -> bool:
        return len(_json(value)) > self.threshold

    def compress(self, result: Any, hint: str = "result") -> Any:
        """The result as the model should see it. An object keeps its short fields (ids, names, counts: what
        the next steps need) and shows a key for every long one; when it is still long (many medium fields),
        its longest remaining fields become keys too, largest first, while a field is over twice the preview
        length (below that, key plus preview cost about as much as the value). A long result that is not an
        object is stored whole. Short results come back unchanged. ``nested``: see :meth:`_shape`."""
        if self.nested:
            return self._shape(result, hint, self.threshold * NESTED_BUDGET)
        if isinstance(result, Mapping):
            out: dict[Any, Any] = {}
            sizes: list[tuple[int, Any]] = []
            for name, value in result.items():
                size = len(_json(value))
                if size > self.threshold:
                    out[name] = self.put(value, str(name))
                else:
                    out[name] = value
                    sizes.append((size, name))
            for size, name in sorted(sizes, key=lambda item: -item[0]):
                if size <= 2 * self.preview_chars or not self.is_long(out):
                    break
                out[name] = self.put(out[name], str(name))
            return out
        if self.is_long(result):
            return self.put(result, hint)
        return result

    def _shape(self, value: Any, hint: str, budget: int) -> Any:
        """``value`` with its shape kept, in about ``budget`` characters. A long string (over the threshold)
        becomes its key wherever it is. A long list shows its first item (shaped in half the budget), then as
        many of the next as fit, objects by their short plain fields (ids, names, prices: what a later call
        picks by), and a marker naming the key of the whole list. An object shapes each field; while it is
        over budget its largest field is shaped again in half the room (a list or object) or put behind its
        key."""
        if not self.is_long(value):
            return value
        if not isinstance(value, (list, Mapping)):
            return self.put(value, hint)
        if isinstance(value, list):
            if len(_json(value)) <= budget:
                return [self._shape(item, hint, budget) for item in value]
            key = self.put(value, hint)
            shown: list[Any] = [self._shape(value[0], hint, max(self.threshold, budget // 2))] if value else []
            for item in value[1:]:
                digest = _digest(item) if isinstance(item, Mapping) else self._shape(item, hint, self.threshold)
                if len(_json([*shown, digest])) > budget:
                    break
                shown.append(digest)
            short = len(value) > 1 and isinstance(value[1], Mapping)
            if len(shown) < len(value) or short:
                shown.append(f"... {key} has all {len(value)}" + (" (after the first: short fields only)" if short else ""))
            return shown
        out = {name: self._shape(field_value, str(name), budget) for name, field_value in value.items()}
        while len(_json(out)) > budget:
            size, name = max(((len(_json(v)), name) for name, v in out.items() if not _is_key(v, self)),
                             default=(0, None))
            if size <= _MIN_KEYED:
                break
            smaller = self._shape(value[name], str(name), size // 2) if isinstance(out[name], (list, Mapping)) else None
            if smaller is not None and len(_json(smaller)) < size:
                out[name] = smaller
            else:
                out[name] = self.put(value[name], str(name))
        return out

    # ---- what the model sees ----------------------------------------------------------------------
    def preview(self, key: str) -> str:
        cached = self._previews.get(key)
        if cached is None:  # stored values do not change, so each preview is made once
            text = _json(self.values[key])
            cached = text if len(text) <= self.preview_chars else (
                f"{text[: self.preview_chars].rstrip()}... ({len(text):,} characters)")
            self._previews[key] = cached
        return cached

    def previews(self) -> dict[str, str]:
        return {key: self.preview(key) for key in self.values}

    def encode(self, value: Any) -> Any:
        """Replace any stored value inside ``value`` by its key (how a model writes the arguments): a long
        value, or an earlier step's whole result when it is an object or a list (never a bare id or number,
        which a model writes as it is)."""
        for key, stored in self.values.items():
            if value == stored and type(value) is type(stored) and (
                self.is_long(value) or (key in self.results and isinstance(value, (Mapping, list)))
            ):
                return key
        if isinstance(value, Mapping):
            return {k: self.encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        return value

    def encode_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """A call's arguments as a model writes them: each value encoded, the arguments themselves always an
        object (never one key, even when they equal an earlier result)."""
        return {name: self.encode(value) for name, value in args.items()}

    # ---- resolving keys ---------------------------------------------------------------------------
    def unknown_keys(self, value: Any) -> list[str]:
        """Keys mentioned in ``value`` that this run never stored (a model inventing keys)."""
        found: list[str] = []
        if isinstance(value, str):
            found = [k for k in _KEY.findall(value) if k not in self.values]
        elif isinstance(value, Mapping):
            found = [k for v in value.values() for k in self.unknown_keys(v)]
        elif isinstance(value, list):
            found = [k for v in value for k in self.unknown_keys(v)]
        return found

    def resolve(self, value: Any, schema: Mapping[str, Any] | None = None) -> Any:
        """Turn keys back into values. A whole-value key takes the stored value, converted to what
        ``schema`` expects (JSON text for a string parameter given a list, say); a key inside a longer
        string is replaced by the value's text."""
        if isinstance(value, str):
            stripped = value.strip()
            if stripped in self.values:
                return _coerce(self.values[stripped], schema)
            if KEY_PREFIX in value:
                return _KEY.sub(lambda m: _json(self.values[m.group(0)]) if m.group(0) in self.values else m.group(0), value)
            return value
        if isinstance(value, Mapping):
            props = (schema or {}).get("properties", {}) if isinstance(schema, Mapping) else {}
            return {k: self.resolve(v, props.get(k)) for k, v in value.items()}
        if isinstance(value, list):
            items = (schema or {}).get("items") if isinstance(schema, Mapping) else None
            return [self.resolve(v, items) for v in value]
        return value

    def resolve_args(self, args: Mapping[str, Any], parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        props = (parameters or {}).get("properties", {}) or {}
        return {name: self.resolve(value, props.get(name)) for name, value in args.items()}


@dataclass(frozen=True)
class Observation:
    """A step's result as the model sees it: ``key`` holds the whole result, ``shown`` is the result with its
    long values replaced by their keys, ``new_keys`` maps each key this result added to its preview."""

    key: str
    shown: Any
    new_keys: dict[str, str]
    """Includes ``key`` itself when the whole result is shown only as a preview (``shown == key``)."""


def calls_as_written(calls: list[Mapping[str, Any]], threshold: int, *, nested: bool = False) -> list[dict[str, Any]]:
    """Recorded calls (``name``, ``arguments``, ``result``) as a model writes them when the executor keeps
    long results in variable memory: an argument stored by then is written as its key. Computed from the
    recorded results alone, independently of any executor run (scripted replays, benchmarks)."""
    memory = VariableMemory(threshold=threshold, nested=nested)
    written = []
    for call in calls:
        written.append({"name": call["name"], "arguments": memory.encode_args(call["arguments"])})
        memory.observe(call["result"], hint=call["name"])
    return written


def _types(schema: Mapping[str, Any] | None) -> set[str]:
    if not schema:
        return set()
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    for option in schema.get("anyOf", []) or []:
        kinds |= _types(option)
    return kinds


def _coerce(value: Any, schema: Mapping[str, Any] | None) -> Any:
    kinds = _types(schema)
    if not kinds:
        return value
    if isinstance(value, str) and kinds & {"array", "object"} and "string" not in kinds:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if not isinstance(value, str) and "string" in kinds and not kinds & {"array", "object"}:
        return _json(value)
    return value
