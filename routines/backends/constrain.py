"""Grammar-constrained decoding for the embedded backend, on top of ``llguidance``.

A :class:`~routines.backends.base.Constraint` becomes one llguidance grammar:

- ``tools``: exactly ``<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>`` where the name is one
  of the tools and the arguments fit that tool's JSON schema (a Lark grammar with one ``%json`` alternative
  per tool);
- ``json_schema``: one bare JSON value fitting the schema.

Every schema is tightened first (:func:`cap_schema`): strings get ``maxLength`` (the constraint's
``max_string_length``) and objects with declared properties get ``additionalProperties: false``. Without
caps a small model loops inside strings until ``max_tokens``; with them its constrained output always
parsed in our measurements (design 5). JSON is written the way :func:`routines.backends.scripted.call_text`
writes it (``", "`` and ``": "``, no other whitespace), which is also the shape of the training data.

:class:`Guide` holds one llguidance matcher per sequence and masks logits step by step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import llguidance
import numpy as np
import torch

from routines.backends.base import Constraint, ToolSpec
from routines.backends.schema import NO_CLOSING_TAG, cap_schema
from routines.errors import ConstraintError

logger = logging.getLogger(__name__)

JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    # Ignore JSON-schema keywords llguidance does not implement (e.g. unknown ``format``s) rather than fail.
    "lenient": True,
}
"""llguidance JSON options (``x-guidance``): canonical separators, no free whitespace."""


MAX_FREE_PROPERTIES = 16
"""Keys a free-form object argument may have under the grammar. Measured (docs/results.md, issue 13): with
``next``, 163 of the untrained model's 260 finish-step calls (``summarize``, ``generate_report``) never closed
their ``data`` object before the 384-token cap, adding keys in a loop; 41 of the trained adapter's. HR calls
pass at most 6 keys in an object."""


def _arguments_schema(tool: ToolSpec, max_string_length: int) -> dict[str, Any]:
    params = dict(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
    params.setdefault("type", "object")
    capped = cap_schema(params, max_string_length, string_pattern=NO_CLOSING_TAG,
                        max_free_properties=MAX_FREE_PROPERTIES)
    capped["x-guidance"] = JSON_OPTIONS
    return capped


def tool_call_lark(tools: Sequence[ToolSpec], max_string_length: int) -> str:
    """The Lark grammar (llguidance dialect) of exactly one ``<tool_call>`` to one of ``tools``."""
    seen: dict[str, ToolSpec] = {}
    for tool in tools:
        seen.setdefault(tool.name, tool)
    if not seen:
        raise ConstraintError("a tool-call constraint needs at least one tool")
    lines = ['start: "<tool_call>{\\"name\\": " call "}</tool_call>"']
    rules = [f"tool_{i}" for i in range(len(seen))]
    lines.append("call: " + " | ".join(rules))
    for rule, tool in zip(rules, seen.values(), strict=True):
        head = json.dumps(json.dumps(tool.name) + ', "arguments": ')
        schema = json.dumps(_arguments_schema(tool, max_string_length), ensure_ascii=False)
        lines.append(f"{rule}: {head} %json {schema}")
    return "\n".join(lines) + "\n"


def grammar_for(constraint: Constraint) -> str:
    """The llguidance grammar (serialised) that enforces ``constraint``."""
    if constraint.tools and constraint.json_schema is not None:
        raise ConstraintError("set either Constraint.tools or Constraint.json_schema, not both")
    if constraint.tools:
        return llguidance.LLMatcher.grammar_from_lark(
            tool_call_lark(constraint.tools, constraint.max_string_length)
        )
    if constraint.json_schema is not None:
        schema = cap_schema(constraint.json_schema, constraint.max_string_length)
        return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)  # type: ignore[arg-type]
    raise ConstraintError("the constraint is empty: set Constraint.tools or Constraint.json_schema")


def is_active(constraint: Constraint | None) -> bool:
    return constraint is not None and (bool(constraint.tools) or constraint.json_schema is not None)


def ll_tokenizer(hf_tokenizer: Any, n_vocab: int) -> llguidance.LLTokenizer:
    """llguidance's view of a fast Hugging Face tokenizer (about 0.3 s; cache the result)."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=n_vocab)


@lru_cache(maxsize=16)
def _template(tokenizer: llguidance.LLTokenizer, grammar: str) -> llguidance.LLMatcher:
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    if matcher.is_error():
        raise ConstraintError(f"the constraint's grammar was rejected by llguidance: {matcher.get_error()}")
    return matcher


class Guide:
    """One matcher per sequence for one constraint; masks logits in place and follows the chosen tokens."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, constraint: Constraint, n_sequences: int) -> None:
        self._template = _template(tokenizer, grammar_for(constraint))
        self.matchers = [self._template.deep_copy() for _ in range(n_sequences)]
        self.vocab_size = tokenizer.vocab_size
        self._bitmask = np.full((n_sequences, (self.vocab_size + 31) // 32), -1, dtype=np.int32)
        self._bits = torch.arange(32, dtype=torch.int32)

    def select(self, rows: Sequence[int]) -> None:
        """Keep only these sequences (after the decoder dropped finished ones)."""
        self.matchers = [self.matchers[i] for i in rows]
        self._bitmask = np.ascontiguousarray(self._bitmask[list(rows)])

    def reset(self, row: int) -> None:
        """Start sequence ``row`` afresh (a new conversation took its slot)."""
        self.matchers[row] = self._template.deep_copy()

    def mask(self, logits: torch.Tensor, rows: Sequence[int] | None = None) -> None:
        """Set the logits of tokens the grammar forbids to ``-inf``: ``logits`` is ``[n_sequences, vocab]``,
        or ``[len(rows), vocab]`` for the sequences ``rows``."""
        picked = list(range(len(self.matchers))) if rows is None else list(rows)
        for i in picked:
            row = self._bitmask[i]
            self.matchers[i].unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
        words = torch.from_numpy(self._bitmask[picked] if rows is not None else self._bitmask)
        allowed = ((words.unsqueeze(-1) >> self._bits) & 1).bool().reshape(len(picked), -1)
        vocab = min(logits.shape[-1], allowed.shape[-1])
        logits[:, :vocab].masked_fill_(~allowed[:, :vocab], float("-inf"))
        if logits.shape[-1] > vocab:
            logits[:, vocab:] = float("-inf")

    def forced(self, row: int) -> list[int]:
        """The tokens the grammar forces next in sequence ``row`` (none where the model has a choice)."""
        return list(self.matchers[row].compute_ff_tokens())

    def advance_all(self, row: int, tokens: Sequence[int]) -> bool:
        """Follow ``tokens`` in sequence ``row``; True once the grammar is complete."""
        matcher = self.matchers[row]
        if not matcher.consume_tokens(list(tokens)):  # pragma: no cover - forced tokens always fit
            raise RuntimeError(f"the grammar refused its own forced tokens: {matcher.get_error()}")
        return matcher.is_stopped()

    def advance(self, row: int, token: int) -> bool:
        """Follow ``token`` in sequence ``row``; True once the grammar is complete (only EOS may follow)."""
        matcher = self.matchers[row]
        if not matcher.consume_token(token):
            raise RuntimeError(
                f"constrained decoding chose a token the grammar forbids: {matcher.get_error()}"
            )
        return matcher.is_stopped()
